// The measurement loop (see runner.hpp). Timings: each step starts after a
// barrier; a step's time is the max over ranks of that rank's wall time for the step.
#include "runner/runner.hpp"

#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <optional>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "placement/strategy_plan.hpp"
#include "runner/checked_routing.hpp"
#include "runner/progress.hpp"
#include "runner/reference_cache.hpp"
#include "runner/stats.hpp"
#include "runner/trace.hpp"
#include "runner/verification.hpp"
#include "strategies/strategy.hpp"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

// Sums over the measured steps of one kind (prefill or decode), this rank.
struct SpanSums {
  PhaseTimes phases{};
  PhaseTimes host{};
  double wall_ms = 0;
  double busy_ms = 0;
  double comm_ms = 0;
  double exposed_comm_ms = 0;
  void add(const StepSpans& s, double wall) {
    for (int i = 0; i < kNumPhases; ++i) {
      phases[i] += s.phases[i];
      host[i] += s.host[i];
    }
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

// Max and mean over ranks of this rank's `per`, elementwise. Collective.
void max_and_mean(Comm& world, const std::vector<double>& per, double* max, double* mean) {
  std::vector<double> mx = per, sum = per;
  world.all_reduce_max_host(mx);
  world.all_reduce_sum_host(sum);
  for (size_t i = 0; i < per.size(); ++i) {
    max[i] = mx[i];
    mean[i] = sum[i] / world.size();
  }
}

// Per-phase mean time per step: max and mean over ranks. Spans on different streams may overlap;
// "idle" is the step time in no span at all.
PhaseStats phase_stats(Comm& world, const SpanSums& sums, double steps) {
  std::vector<double> per(kNumPhases + 1, 0);
  for (int i = 0; i < kNumPhases; ++i) per[i] = steps > 0 ? sums.phases[i] / steps : 0;
  per[kNumPhases] = steps > 0 ? std::max(0.0, sums.wall_ms - sums.busy_ms) / steps : 0;
  PhaseStats p;
  max_and_mean(world, per, p.max.data(), p.mean.data());
  return p;
}

// Per-phase mean host time per step: max and mean over ranks.
HostStats host_stats(Comm& world, const SpanSums& sums, double steps) {
  std::vector<double> per(kNumPhases, 0);
  for (int i = 0; i < kNumPhases; ++i) per[i] = steps > 0 ? sums.host[i] / steps : 0;
  HostStats h;
  max_and_mean(world, per, h.max.data(), h.mean.data());
  return h;
}

// Communication time per step and the part of it no compute span covered, on the rank whose
// overlap efficiency (1 - exposed / communication) is lowest. Collective; complete on rank 0.
OverlapStats overlap_stats(Comm& world, const SpanSums& sums, double steps) {
  const double comm = steps > 0 ? sums.comm_ms / steps : 0, exposed = steps > 0 ? sums.exposed_comm_ms / steps : 0;
  const std::vector<double> all = world.gather_host(std::vector<double>{comm, exposed}, 0);
  if (world.rank() != 0) return {};
  auto efficiency = [](double c, double e) { return c > 0 ? 1 - e / c : 1.0; };
  int worst = 0;
  for (int r = 1; r < world.size(); ++r)
    if (efficiency(all[2 * r], all[2 * r + 1]) < efficiency(all[2 * worst], all[2 * worst + 1])) worst = r;
  double mean_eff = 0;
  for (int r = 0; r < world.size(); ++r) mean_eff += efficiency(all[2 * r], all[2 * r + 1]) / world.size();
  return {all[2 * worst], all[2 * worst + 1], efficiency(all[2 * worst], all[2 * worst + 1]), worst, mean_eff};
}

// Collective: bytes each rank sent to each rank since the counters were reset, on every rank: [src][dst].
std::vector<std::vector<int64_t>> traffic_matrix(Comm& world) {
  const int n = world.size();
  std::vector<int64_t> flat(static_cast<size_t>(n) * n, 0);
  const auto& mine = world.traffic().bytes_to_rank;
  for (int d = 0; d < n; ++d) flat[static_cast<size_t>(world.rank()) * n + d] = mine.at(d);
  world.all_reduce_sum_host(flat);
  std::vector<std::vector<int64_t>> m(n, std::vector<int64_t>(n));
  for (int s = 0; s < n; ++s)
    for (int d = 0; d < n; ++d) m[s][d] = flat[static_cast<size_t>(s) * n + d];
  return m;
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

// What every strategy of one run shares.
struct RunState {
  const Config& config;
  const RunOptions& options;
  ComputeBackend& compute;
  Comm& world;
  Topology topo;
  ReferenceCache references;
  bool gather;                        // outputs are gathered (verification or dumps)
  bool replay;                        // verified against a teacher-forced reference (16-bit runs)
  Progress& progress;
  TraceRecorder recorder;
  TraceState trace;
  nlohmann::ordered_json dump_index;  // rank 0, with --dump-outputs
};

// What only world rank 0 keeps of a measured strategy: its description, the plan and the routing
// its traffic is predicted for (ep), the checked pass's routing and the raw times.
void describe(RunState& st, const StrategyConfig& spec, const Strategy& strategy, const StepTimes& times,
              CheckedPass& pass, StrategyMeasurement& m) {
  const Config& config = st.config;
  const RunOptions& options = st.options;
  m.spec = spec;
  m.kind = strategy.kind();
  m.layout = strategy.layout();
  if (const auto it = options.plan_paths.find(spec.name); it != options.plan_paths.end()) m.layout["plan_file"] = it->second;
  m.world_size = st.world.size();
  m.dtype_bytes = dtype_bytes(st.compute.dtype());
  m.cuda_runtime = st.compute.name() == "cuda";
  m.prefill_ms = times.prefill_ms;
  m.decode_ms = times.decode_ms;
  if (const Placement* ranks = strategy.rank_placement()) m.rank_placement = *ranks;
  if (const Placement* placement = strategy.placement()) {  // ep: the prediction's plan and its routing
    m.placement = *placement;
    m.planned = placement_load_profile(config, spec, st.topo);
    m.planned_spec = placement_profile_spec(config, spec);  // what `planned` holds
    if (const auto it = options.plan_load.find(spec.name); it != options.plan_load.end()) {
      m.planned = it->second.first;   // what the plan file was made for
      m.planned_spec = it->second.second;
    }
  }
  if (options.verify && pass.routing.has_trace)
    m.choices_match_reference = st.references.get(spec.load_balancing).choices == pass.routing.trace.choices;
  m.routing = std::move(pass.routing);
}

// One strategy: built, measured, checked. Collective; the measurement is complete on world rank 0
// (null elsewhere). `verified` is the same on every rank.
std::optional<StrategyMeasurement> measure_strategy(RunState& st, size_t si, bool& verified) {
  const StrategyConfig& spec = st.config.strategies[si];
  ComputeBackend& compute = st.compute;
  Comm& world = st.world;
  st.progress.begin_strategy(int(si), spec.name);
  const auto plan_it = st.options.plans.find(spec.name);
  const Placement* plan_file = plan_it == st.options.plans.end() ? nullptr : &plan_it->second;
  StrategyContext ctx{st.config, spec, compute, world, st.topo, *st.options.routing, plan_file};
  compute.reset_peak_allocated();  // memory is reported per strategy
  set_activity_strategy(spec.name);
  std::unique_ptr<Strategy> strategy;
  {
    ActivityScope setup_activity("setup");
    strategy = make_strategy(ctx);
  }

  world.traffic().reset();
  compute.reset_counters();
  st.recorder.add_strategy_name(spec.name);
  st.trace.strategy = static_cast<int>(si);
  const StepTimes times = measure(*strategy, st.config, compute, world, st.progress, st.options.trace ? &st.trace : nullptr);
  std::vector<int64_t> flops{compute.flops()};
  world.all_reduce_sum_host(flops);
  StrategyMeasurement m;
  m.flops = flops[0];
  m.traffic_bytes = traffic_matrix(world);

  CheckedPass pass = checked_pass(*strategy, st.config, compute, world, st.gather, st.replay);
  ActivityScope verification_activity("verification");  // other ranks wait for rank 0 here
  st.progress.step_done("check", 0, 0, 0, 0);
  if (world.rank() == 0) {
    if (st.options.verify) {
      std::unique_ptr<ReferenceOutputs> replayed;
      if (st.replay) {
        RoutingTrace trace = pass.routing.trace;
        trace.source = "strategy " + spec.name;
        replayed = std::make_unique<ReferenceOutputs>(run_reference_replayed(
            st.config.model, st.config.workload, st.config.workload.decode_steps, spec.load_balancing,
            *RoutingSource::from_trace(st.config, std::move(trace)), *st.options.routing));
      }
      m.verification = verify_outputs({pass.prefill, pass.decode, pass.routing}, st.references.get(spec.load_balancing),
                                      replayed.get(), compute.precision());
    }
    if (!st.options.dump_dir.empty()) dump_outputs(st.options.dump_dir, spec.name, pass, st.config, st.dump_index);
  }
  std::vector<double> failed{m.verification.passed ? 0.0 : 1.0};
  world.all_reduce_max_host(failed);
  verified = failed[0] == 0;

  const int iters = st.config.run.iterations;
  const int steps = st.config.workload.decode_steps;
  m.prefill_phases = phase_stats(world, times.prefill, iters);
  m.decode_phases = phase_stats(world, times.decode, double(iters) * steps);
  m.prefill_host = host_stats(world, times.prefill, iters);
  m.decode_host = host_stats(world, times.decode, double(iters) * steps);
  m.prefill_overlap = overlap_stats(world, times.prefill, iters);
  m.decode_overlap = overlap_stats(world, times.decode, double(iters) * steps);
  std::vector<double> mem{double(compute.peak_allocated_bytes())}, mem_sum = mem;
  world.all_reduce_max_host(mem);
  world.all_reduce_sum_host(mem_sum);
  if (world.rank() != 0) return std::nullopt;
  m.peak_allocated_bytes_max = int64_t(mem[0]);
  m.peak_allocated_bytes_mean = int64_t(mem_sum[0] / world.size());
  describe(st, spec, *strategy, times, pass, m);
  return m;
}

// Rank 0, with --dump-outputs: the references verified against and the index of every dump.
void finish_dumps(RunState& st) {
  const Config& config = st.config;
  if (st.options.verify) {
    // One reference per distinct load-balancing setting verified against (the policy changes the
    // routing): "reference" for the first strategy's, "reference-<policy>[-n]" for others.
    std::map<std::string, std::string> dumped;  // setting key -> dump name
    for (const StrategyConfig& spec : config.strategies) {
      const std::string key = ReferenceCache::key(spec.load_balancing);
      if (!dumped.count(key)) {
        std::string name = dumped.empty() ? "reference" : "reference-" + spec.load_balancing.policy;
        for (int n = 2; st.dump_index.contains(name); ++n) name = "reference-" + spec.load_balancing.policy + "-" + std::to_string(n);
        const ReferenceOutputs& ref = st.references.get(spec.load_balancing);
        CheckedPass rp;
        rp.prefill = ref.prefill;
        rp.decode = ref.decode;
        dump_outputs(st.options.dump_dir, name, rp, config, st.dump_index);
        dumped[key] = name;
      }
      st.dump_index["reference_of"][spec.name] = dumped[key];
    }
  }
  st.dump_index["order"] = "global token order: sequence-major, then position; decode is step-major then sequence";
  write_file_atomic(st.options.dump_dir + "/index.json", st.dump_index.dump(2) + "\n");
}

}  // namespace

RunOutcome run_strategies(const Config& config, const RunOptions& options, ComputeBackend& compute, Comm& world) {
  MOE_REQUIRE(options.routing != nullptr, "run_strategies: no routing source");
  // Progress units per strategy: warm-up, measured iterations, the checked pass (one per step).
  Progress quiet(std::cerr, ProgressOptions{});
  RunState st{config,
              options,
              compute,
              world,
              Topology::from_config(config.cluster),
              ReferenceCache(config, *options.routing),
              options.verify || !options.dump_dir.empty(),
              options.verify && needs_replayed_reference(compute.precision(), *options.routing),
              options.progress ? *options.progress : quiet,
              TraceRecorder{},
              TraceState{},
              nlohmann::ordered_json{}};
  world.barrier();
  st.trace = TraceState{&st.recorder, 0, Clock::now()};
  const int warm = std::min(config.workload.warmup_steps, config.workload.decode_steps);
  st.progress.begin_run(int(config.strategies.size()),
                        1 + warm + long(config.run.iterations) * (1 + config.workload.decode_steps) + 1);

  RunOutcome outcome;
  for (size_t si = 0; si < config.strategies.size(); ++si) {
    bool verified = true;
    std::optional<StrategyMeasurement> m = measure_strategy(st, si, verified);
    if (!verified) outcome.all_verified = false;
    if (!m) continue;
    outcome.strategies.push_back(std::move(*m));
    if (options.on_strategy_done) options.on_strategy_done(outcome.strategies.back());
  }
  set_activity_strategy("");
  if (world.rank() == 0 && !options.dump_dir.empty()) finish_dumps(st);
  if (options.trace) outcome.trace = st.recorder.gather(world, st.topo);
  return outcome;
}

}  // namespace moe
