// Measurement loop and per-strategy results (see runner.hpp). Timings: each step starts after a
// barrier; a step's time is the max over ranks of that rank's wall time for the step.
#include "runner/runner.hpp"

#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "cost/memory.hpp"
#include "placement/strategy_plan.hpp"
#include "runner/efficiency.hpp"
#include "runner/load_report.hpp"
#include "runner/progress.hpp"
#include "runner/reference_cache.hpp"
#include "runner/stats.hpp"
#include "runner/trace.hpp"
#include "runner/traffic_report.hpp"
#include "runner/verification.hpp"
#include "strategies/strategy.hpp"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

// Sums over the measured steps of one kind (prefill or decode), this rank.
struct SpanSums {
  PhaseTimes phases{};
  double wall_ms = 0;
  double busy_ms = 0;
  double comm_ms = 0;
  double exposed_comm_ms = 0;
  void add(const StepSpans& s, double wall) {
    for (int i = 0; i < kNumPhases; ++i) phases[i] += s.phases[i];
    wall_ms += wall;
    busy_ms += s.busy_ms;
    comm_ms += s.comm_ms;
    exposed_comm_ms += s.exposed_comm_ms;
  }
};

struct StepTimes {
  std::vector<double> prefill_ms;   // [iterations], max over ranks
  std::vector<double> decode_ms;    // [iterations * steps], max over ranks
  SpanSums prefill, decode;         // this rank, summed over the measured steps
};

// The run's time origin (a barrier at its start) and the trace, when one is asked for.
struct TraceState {
  TraceRecorder* recorder = nullptr;
  int strategy = 0;
  Clock::time_point origin;
};

// One step after a barrier. `step_idx`: 0 prefill, k decode step k (as in the load report; named in
// watchdog messages). Traced steps keep their spans, placed on the run's time line.
double timed_step(Comm& world, PhaseTimer& timer, SpanSums& sums, int step_idx, const std::function<void()>& step,
                  const TraceState* trace = nullptr) {
  ActivityScope step_activity(ActivityField::step, step_idx);
  {
    ActivityScope barrier_activity("barrier");
    world.barrier();
  }
  ActivityScope forward_activity("forward");
  timer.keep_spans(trace != nullptr);
  const auto t0 = Clock::now();
  timer.start_step();
  step();
  const StepSpans spans = timer.finish_step();  // synchronizes the device
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  sums.add(spans, ms);
  if (trace)
    trace->recorder->add_step(trace->strategy, step_idx,
                              std::chrono::duration<double, std::milli>(t0 - trace->origin).count(), spans);
  return ms;
}

StepTimes measure(Strategy& s, const Config& c, ComputeBackend& compute, Comm& world, Progress& progress,
                  const TraceState* trace) {
  PhaseTimer timer(compute);
  SpanSums scratch;
  // Warm-up: one untimed prefill and a few decode steps (allocations, caches, first-touch).
  s.reset();
  timed_step(world, timer, scratch, 0, [&] { s.prefill(timer); });
  progress.step_done("warm-up", 0, 0, 0, 0);
  for (int i = 0; i < std::min(c.workload.warmup_steps, c.workload.decode_steps); ++i) {
    timed_step(world, timer, scratch, i + 1, [&] { s.decode_step(timer); });
    progress.step_done("warm-up", 0, 0, 0, 0);
  }

  // Counters cover the measured iterations only. The first measured iteration is traced.
  compute.reset_counters();
  world.traffic().reset();
  StepTimes t;
  std::vector<double> prefill_local, decode_local;
  for (int it = 0; it < c.run.iterations; ++it) {
    const TraceState* tr = it == 0 ? trace : nullptr;
    s.reset();
    prefill_local.push_back(timed_step(world, timer, t.prefill, 0, [&] { s.prefill(timer); }, tr));
    progress.step_done("prefill", it + 1, c.run.iterations, 0, 0);
    for (int step = 0; step < c.workload.decode_steps; ++step) {
      decode_local.push_back(timed_step(world, timer, t.decode, step + 1, [&] { s.decode_step(timer); }, tr));
      progress.step_done("decode", it + 1, c.run.iterations, step + 1, c.workload.decode_steps);
    }
  }
  ActivityScope results_activity("results");
  world.all_reduce_max_host(prefill_local);
  world.all_reduce_max_host(decode_local);
  t.prefill_ms = prefill_local;
  t.decode_ms = decode_local;
  return t;
}

// Per-phase mean time per step: max and mean over ranks. Spans on different streams may overlap;
// "idle" is the step time in no span at all.
nlohmann::ordered_json phases_json(Comm& world, const SpanSums& sums, double steps) {
  std::vector<double> per(kNumPhases + 1, 0);
  for (int i = 0; i < kNumPhases; ++i) per[i] = steps > 0 ? sums.phases[i] / steps : 0;
  per[kNumPhases] = steps > 0 ? std::max(0.0, sums.wall_ms - sums.busy_ms) / steps : 0;
  std::vector<double> mx = per, mean = per;
  world.all_reduce_max_host(mx);
  world.all_reduce_sum_host(mean);
  nlohmann::ordered_json j;
  for (int i = 0; i <= kNumPhases; ++i) {
    const char* name = i < kNumPhases ? phase_name(static_cast<Phase>(i)) : "idle";
    j[name] = {{"max", mx[i]}, {"mean", mean[i] / world.size()}};
  }
  return j;
}

// Communication time per step and the part of it no compute span covered, on the rank whose
// overlap efficiency (1 - exposed / communication) is lowest. Collective; complete on rank 0.
nlohmann::ordered_json overlap_json(Comm& world, const SpanSums& sums, double steps) {
  const double comm = steps > 0 ? sums.comm_ms / steps : 0, exposed = steps > 0 ? sums.exposed_comm_ms / steps : 0;
  const std::vector<double> all = world.gather_host(std::vector<double>{comm, exposed}, 0);
  if (world.rank() != 0) return nullptr;
  auto efficiency = [](double c, double e) { return c > 0 ? 1 - e / c : 1.0; };
  int worst = 0;
  for (int r = 1; r < world.size(); ++r)
    if (efficiency(all[2 * r], all[2 * r + 1]) < efficiency(all[2 * worst], all[2 * worst + 1])) worst = r;
  double mean_eff = 0;
  for (int r = 0; r < world.size(); ++r) mean_eff += efficiency(all[2 * r], all[2 * r + 1]) / world.size();
  return {{"comm_ms", all[2 * worst]}, {"exposed_comm_ms", all[2 * worst + 1]},
          {"efficiency", efficiency(all[2 * worst], all[2 * worst + 1])}, {"rank", worst}, {"mean_efficiency", mean_eff}};
}

struct CheckedPass {
  std::vector<float> prefill;                 // rank 0
  std::vector<std::vector<float>> decode;     // rank 0
  CheckedRouting routing;
};

// An untimed iteration that gathers outputs (when needed), routing counts and (small runs) every choice.
// `all_choices`: record every choice whatever the size (a teacher-forced reference replays them).
CheckedPass checked_pass(Strategy& s, const Config& c, ComputeBackend& compute, Comm& world, bool gather,
                         bool all_choices) {
  PhaseTimer timer(compute);
  CheckedPass p;
  const int64_t B = c.workload.batch_sequences;
  const int64_t assignments = B * (c.workload.prompt_tokens + c.workload.decode_steps) * c.model.top_k;
  const bool with_choices = all_choices || assignments <= kTraceInlineLimit;
  s.set_record_choices(with_choices);
  s.reset();
  ActivityScope pass_activity("checked_pass");
  {
    ActivityScope step_activity(ActivityField::step, 0);
    timer.start_step();
    s.prefill(timer);
    timer.finish_step();
    ActivityScope gather_activity("gather_output");
    if (gather) p.prefill = s.gather_output();
    record_step(world, s.step_load(), B * c.workload.prompt_tokens, with_choices, p.routing);
  }
  for (int step = 0; step < c.workload.decode_steps; ++step) {
    ActivityScope step_activity(ActivityField::step, step + 1);
    timer.start_step();
    s.decode_step(timer);
    timer.finish_step();
    ActivityScope gather_activity("gather_output");
    if (gather) p.decode.push_back(s.gather_output());
    record_step(world, s.step_load(), B, with_choices, p.routing);
  }
  s.set_record_choices(false);
  return p;
}

void dump_outputs(const std::string& dir, const std::string& name, const CheckedPass& p, const Config& c,
                  nlohmann::ordered_json& index) {
  const int64_t d = c.model.hidden;
  const int64_t B = c.workload.batch_sequences;
  write_npy(dir + "/" + name + ".prefill.npy", p.prefill, B * c.workload.prompt_tokens, d);
  std::vector<float> dec;
  for (const auto& s : p.decode) dec.insert(dec.end(), s.begin(), s.end());
  write_npy(dir + "/" + name + ".decode.npy", dec, B * static_cast<int64_t>(p.decode.size()), d);
  index[name] = {{"prefill", name + ".prefill.npy"}, {"prefill_shape", {B * c.workload.prompt_tokens, d}},
                 {"decode", name + ".decode.npy"}, {"decode_shape", {B * static_cast<int64_t>(p.decode.size()), d}}};
}

}  // namespace

RunOutcome run_strategies(const Config& config, const RunOptions& options, ComputeBackend& compute, Comm& world) {
  RunOutcome outcome;
  MOE_REQUIRE(options.routing != nullptr, "run_strategies: no routing source");
  ReferenceCache references(config, *options.routing);
  const Topology topo = Topology::from_config(config.cluster);
  const bool gather = options.verify || !options.dump_dir.empty();
  nlohmann::ordered_json dump_index;
  const bool replay = options.verify && needs_replayed_reference(compute.precision(), *options.routing);
  TraceRecorder recorder;
  world.barrier();
  TraceState trace{&recorder, 0, Clock::now()};

  // Progress units per strategy: warm-up, measured iterations, the checked pass (one per step).
  Progress quiet(std::cerr, ProgressOptions{});
  Progress& progress = options.progress ? *options.progress : quiet;
  const int warm = std::min(config.workload.warmup_steps, config.workload.decode_steps);
  progress.begin_run(int(config.strategies.size()),
                     1 + warm + long(config.run.iterations) * (1 + config.workload.decode_steps) + 1);

  for (size_t si = 0; si < config.strategies.size(); ++si) {
    const StrategyConfig& spec = config.strategies[si];
    progress.begin_strategy(int(si), spec.name);
    const auto plan_it = options.plans.find(spec.name);
    const Placement* plan_file = plan_it == options.plans.end() ? nullptr : &plan_it->second;
    StrategyContext ctx{config, spec, compute, world, topo, *options.routing, plan_file};
    compute.reset_peak_allocated();  // memory is reported per strategy
    set_activity_strategy(spec.name);
    std::unique_ptr<Strategy> strategy;
    {
      ActivityScope setup_activity("setup");
      strategy = make_strategy(ctx);
    }

    world.traffic().reset();
    compute.reset_counters();
    recorder.add_strategy_name(spec.name);
    trace.strategy = static_cast<int>(si);
    const StepTimes times = measure(*strategy, config, compute, world, progress, options.trace ? &trace : nullptr);
    std::vector<int64_t> flops{compute.flops()};
    world.all_reduce_sum_host(flops);
    const auto traffic = traffic_matrix(world);

    CheckedPass pass = checked_pass(*strategy, config, compute, world, gather, replay);
    ActivityScope verification_activity("verification");  // other ranks wait for rank 0 here
    progress.step_done("check", 0, 0, 0, 0);
    nlohmann::ordered_json verification = {{"checked", false}};
    bool passed = true;
    if (world.rank() == 0) {
      if (options.verify) {
        std::unique_ptr<ReferenceOutputs> replayed;
        if (replay) {
          RoutingTrace trace = pass.routing.trace;
          trace.source = "strategy " + spec.name;
          replayed = std::make_unique<ReferenceOutputs>(run_reference_replayed(
              config.model, config.workload, config.workload.decode_steps, spec.load_balancing,
              *RoutingSource::from_trace(config, std::move(trace)), *options.routing));
        }
        verification = verify_outputs({pass.prefill, pass.decode, pass.routing}, references.get(spec.load_balancing),
                                      replayed.get(), compute.precision());
        passed = verification["passed"].get<bool>();
      }
      if (!options.dump_dir.empty()) dump_outputs(options.dump_dir, spec.name, pass, config, dump_index);
    }
    std::vector<double> failed{passed ? 0.0 : 1.0};
    world.all_reduce_max_host(failed);
    if (failed[0] > 0) outcome.all_verified = false;

    const int iters = config.run.iterations;
    const int steps = config.workload.decode_steps;
    nlohmann::ordered_json phases = {{"prefill", phases_json(world, times.prefill, iters)},
                                     {"decode_step", phases_json(world, times.decode, double(iters) * steps)}};
    nlohmann::ordered_json overlap = {{"mode", spec.overlap},
                                      {"prefill", overlap_json(world, times.prefill, iters)},
                                      {"decode_step", overlap_json(world, times.decode, double(iters) * steps)}};
    std::vector<double> mem{double(compute.peak_allocated_bytes())}, mem_sum = mem;
    world.all_reduce_max_host(mem);
    world.all_reduce_sum_host(mem_sum);
    if (world.rank() != 0) continue;

    const Summary prefill_s = summarize(times.prefill_ms);
    const Summary tpot = summarize(times.decode_ms);
    const int64_t prefill_tokens = int64_t(config.workload.batch_sequences) * config.workload.prompt_tokens;
    const double decode_total_s = [&] { double s = 0; for (double v : times.decode_ms) s += v; return s / 1e3; }();
    const double flops_per_iter = double(flops[0]) / iters;
    MemoryEstimate est = estimate_memory(config, spec, world.size(), dtype_bytes(compute.dtype()));
    if (compute.name() == "cuda") add_cuda_runtime(est, spec);

    nlohmann::ordered_json r;
    r["name"] = spec.name;
    r["kind"] = strategy->kind();
    r["layout"] = strategy->layout();
    if (const auto it = options.plan_paths.find(spec.name); it != options.plan_paths.end()) r["layout"]["plan_file"] = it->second;
    r["prefill"] = {{"tokens", prefill_tokens},
                    {"time_s", {{"mean", prefill_s.mean / 1e3}, {"min", prefill_s.min / 1e3}, {"max", prefill_s.max / 1e3}}},
                    {"tokens_per_s", prefill_s.mean > 0 ? prefill_tokens / (prefill_s.mean / 1e3) : 0}};
    r["decode"] = {{"batch", config.workload.batch_sequences},
                   {"steps", steps},
                   {"tpot_ms", {{"mean", tpot.mean}, {"p50", tpot.p50}, {"p99", tpot.p99}}},
                   {"tokens_per_s", decode_total_s > 0 ? double(config.workload.batch_sequences) * steps * iters / decode_total_s : 0}};
    r["phases_ms"] = phases;
    r["overlap"] = overlap;
    TrafficPrediction prediction;
    // The placement the strategy runs with (ep), for the traffic prediction and the cost model.
    const Placement* placement_used = strategy->placement();
    if (placement_used) {
      prediction.placement = placement_used;
      prediction.planned = placement_load_profile(config, spec, topo);
      prediction.planned_spec = placement_profile_spec(config, spec);  // what `planned` holds
      if (const auto it = options.plan_load.find(spec.name); it != options.plan_load.end()) {
        prediction.planned = it->second.first;   // what the plan file was made for
        prediction.planned_spec = it->second.second;
      }
      prediction.bytes_per_row = int64_t(config.model.hidden) * dtype_bytes(compute.dtype());
    }
    r["traffic"] = traffic_json(config, topo, traffic, iters, prediction, pass.routing);
    r["load"] = load_json(pass.routing, spec.load_balancing);
    r["routing"] = routing_json(*options.routing, pass.routing,
                                options.verify ? &references.get(spec.load_balancing).choices : nullptr);
    r["memory"] = {{"peak_allocated_bytes_max", int64_t(mem[0])}, {"peak_allocated_bytes_mean", int64_t(mem_sum[0] / world.size())},
                   {"estimate_bytes", est.total_bytes()}, {"estimate_weights_bytes", est.weights_bytes},
                   {"estimate_kv_cache_bytes", est.kv_cache_bytes}, {"estimate_activations_bytes", est.activations_bytes},
                   {"estimate_comm_buffers_bytes", est.comm_buffers_bytes}, {"estimate_runtime_bytes", est.runtime_bytes}};
    r["efficiency"] = efficiency_json(config, spec, topo, world.size(), dtype_bytes(compute.dtype()),
                                      placement_used ? *placement_used : Placement{}, prefill_s.mean / 1e3, tpot.mean / 1e3, flops_per_iter,
                                      kept_assignments(pass.routing.chosen_by_source, pass.routing.dropped_by_source));
    r["verification"] = verification;
    outcome.strategies.push_back(r);
    if (options.on_strategy_done) options.on_strategy_done(r);
  }
  set_activity_strategy("");
  if (world.rank() == 0 && !options.dump_dir.empty()) {
    if (options.verify) {
      // One reference per distinct load-balancing setting verified against (the policy changes the
      // routing): "reference" for the first strategy's, "reference-<policy>[-n]" for others.
      std::map<std::string, std::string> dumped;  // setting key -> dump name
      for (const StrategyConfig& spec : config.strategies) {
        const std::string key = ReferenceCache::key(spec.load_balancing);
        if (!dumped.count(key)) {
          std::string name = dumped.empty() ? "reference" : "reference-" + spec.load_balancing.policy;
          for (int n = 2; dump_index.contains(name); ++n) name = "reference-" + spec.load_balancing.policy + "-" + std::to_string(n);
          const ReferenceOutputs& ref = references.get(spec.load_balancing);
          CheckedPass rp;
          rp.prefill = ref.prefill;
          rp.decode = ref.decode;
          dump_outputs(options.dump_dir, name, rp, config, dump_index);
          dumped[key] = name;
        }
        dump_index["reference_of"][spec.name] = dumped[key];
      }
    }
    dump_index["order"] = "global token order: sequence-major, then position; decode is step-major then sequence";
    write_file_atomic(options.dump_dir + "/index.json", dump_index.dump(2) + "\n");
  }
  if (options.trace) outcome.trace = recorder.gather(world, topo);
  return outcome;
}

}  // namespace moe
