// Simulated results documents, memory feasibility and sweeps (see simulate.hpp).
#include "sim/simulate.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "cost/memory.hpp"
#include "cost/roofline.hpp"
#include "report/results.hpp"
#include "routing/router.hpp"
#include "schedule/layout.hpp"
#include "sim/assumed_routing.hpp"
#include "sim/simulator.hpp"

namespace moe {
namespace {

using ojson = nlohmann::ordered_json;

double capacity_bytes(const Config& c) { return c.cluster.gpu.memory_gb * 1e9; }
int world_of(const Config& c) { return c.cluster.nodes * c.cluster.gpus_per_node; }

bool fits(const Config& c, const StrategyConfig& s, int eb) {
  return double(estimate_memory(c, s, world_of(c), eb).total_bytes()) <= capacity_bytes(c);
}

// Largest x in {unit, 2*unit, ...} with ok(x), for ok monotone (true then false).
template <class F>
int64_t largest(int64_t unit, int64_t limit, F ok) {
  if (!ok(unit)) return 0;
  int64_t lo = 1, hi = 2;  // in units
  while (hi * unit <= limit && ok(hi * unit)) {
    lo = hi;
    hi *= 2;
  }
  hi = std::min(hi, limit / unit + 1);
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (ok(mid * unit) ? lo : hi) = mid;
  }
  return lo * unit;
}

ojson phases_json(const StepTiming& t) {
  ojson j;
  for (int i = 0; i < kNumPhases; ++i)
    j[phase_name(static_cast<Phase>(i))] = {{"max", t.phase_max_ms[i]}, {"mean", t.phase_mean_ms[i]}};
  j["idle"] = {{"max", t.idle_max_ms}, {"mean", t.idle_mean_ms}};
  return j;
}

ojson roofline_json(const StepTiming& t) {
  ojson j = ojson::object();
  for (int i = 0; i < kNumPhases; ++i) {
    const PhaseRoofline& r = t.roofline[i];
    if (r.compute_ms + r.memory_ms + r.network_ms + r.overhead_ms <= 0) continue;
    const double ratio = r.ratio();
    j[phase_name(static_cast<Phase>(i))] = {{"bound", r.bound()}, {"ratio", std::isfinite(ratio) ? ojson(ratio) : ojson(nullptr)},
                                            {"compute_ms", r.compute_ms}, {"memory_ms", r.memory_ms},
                                            {"network_ms", r.network_ms}, {"overhead_ms", r.overhead_ms}};
  }
  return j;
}

// Mean of the decode steps' timings (phases, roofline, communication).
StepTiming mean_timing(const std::vector<StepTiming>& v) {
  StepTiming m;
  if (v.empty()) return m;
  const double n = double(v.size());
  for (const StepTiming& t : v) {
    m.time_ms += t.time_ms / n;
    for (int i = 0; i < kNumPhases; ++i) {
      m.phase_max_ms[i] += t.phase_max_ms[i] / n;
      m.phase_mean_ms[i] += t.phase_mean_ms[i] / n;
      m.roofline[i].compute_ms += t.roofline[i].compute_ms / n;
      m.roofline[i].memory_ms += t.roofline[i].memory_ms / n;
      m.roofline[i].network_ms += t.roofline[i].network_ms / n;
      m.roofline[i].overhead_ms += t.roofline[i].overhead_ms / n;
    }
    m.idle_max_ms += t.idle_max_ms / n;
    m.idle_mean_ms += t.idle_mean_ms / n;
    m.comm_ms += t.comm_ms / n;
    m.exposed_comm_ms += t.exposed_comm_ms / n;
  }
  return m;
}

ojson overlap_json(const StepTiming& t) {
  return {{"comm_ms", t.comm_ms}, {"exposed_comm_ms", t.exposed_comm_ms},
          {"efficiency", t.comm_ms > 0 ? 1 - t.exposed_comm_ms / t.comm_ms : 1.0}};
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(p * double(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// Expected assignments dropped by the capacity over one iteration (prefill + decode steps).
double expected_dropped(const Config& c, const StrategyConfig& s, const ExpectedRouting& r) {
  if (s.load_balancing.capacity_factor <= 0) return 0;
  const ModelConfig& m = c.model;
  double dropped = 0;
  auto step = [&](int64_t tokens) {
    const int64_t cap = expert_capacity(s.load_balancing.capacity_factor, tokens, m.top_k, m.experts);
    for (int l = 0; l < m.layers; ++l)
      for (int e = 0; e < m.experts; ++e) {
        const double share = r.expert_share.empty() ? 1.0 / m.experts : r.expert_share[l][e];
        dropped += std::max(0.0, share * m.top_k * double(tokens) - double(cap));
      }
  };
  step(int64_t(c.workload.batch_sequences) * c.workload.prompt_tokens);
  for (int t = 0; t < c.workload.decode_steps; ++t) step(c.workload.batch_sequences);
  return dropped;
}

}  // namespace

int simulated_elem_bytes(const Config& c, const std::string& backend) {
  return backend == "cpu" ? 4 : dtype_bytes(parse_dtype(c.model.dtype));
}

int64_t largest_batch_that_fits(const Config& c, const StrategyConfig& s, int eb) {
  // Batches a run accepts: multiples of the ranks' sequence blocks (ep) or of the micro-batches (tp_pp).
  int64_t unit = 1;
  switch (kind_of(s)) {
    case StrategyKind::ep: unit = strategy_ranks(s); break;
    case StrategyKind::tp_pp: unit = s.microbatches; break;
  }
  Config x = c;
  return largest(unit, int64_t(1) << 24, [&](int64_t b) {
    x.workload.batch_sequences = static_cast<int>(b);
    return fits(x, s, eb);
  });
}

int64_t largest_prompt_that_fits(const Config& c, const StrategyConfig& s, int eb) {
  Config x = c;
  return largest(1, int64_t(1) << 24, [&](int64_t p) {
    x.workload.prompt_tokens = static_cast<int>(p);
    return fits(x, s, eb);
  });
}

namespace {

// The step timings of a simulation: prefill, every decode step and, with overlap, the decode steps
// in program order (what the overlap saves).
struct SimulatedSteps {
  StepTiming prefill, decode_mean;
  std::vector<double> tpots, serial_tpots;
};

SimulatedSteps simulate_steps(const CostModel& model, const StrategyConfig& s, const WorkloadConfig& w,
                              const HardwareProfile& hw) {
  SimulatedSteps out;
  out.prefill = simulate_step(model.prefill(), hw);
  std::vector<StepTiming> dec;
  const bool overlapped = s.overlap != "none";
  for (int t = 0; t < w.decode_steps; ++t) {
    StepCost sc = model.decode(t);
    dec.push_back(simulate_step(sc, hw));
    out.tpots.push_back(dec.back().time_ms);
    if (overlapped) {
      sc.schedule = serialized(sc.schedule);
      out.serial_tpots.push_back(simulate_step(sc, hw).time_ms);
    }
  }
  out.decode_mean = mean_timing(dec);
  return out;
}

// The `traffic`, `load` and `routing` sections for the assumed routing.
void routing_sections(ojson& r, const Config& c, const StrategyConfig& s, const CostTotals& tot, const AssumedRouting& assumed) {
  const ExpectedRouting& routing = assumed.routing;
  r["traffic"] = {{"per_iteration", true},
                  {"intra_node_bytes", std::llround(tot.links.intra_bytes)},
                  {"inter_node_bytes", std::llround(tot.links.inter_bytes)},
                  {"max_intra_node_link_bytes", std::llround(tot.links.max_port_sent())},
                  {"max_inter_node_link_bytes", std::llround(tot.links.max_nic_sent())},
                  {"source", "cost model, " + assumed.name + " routing"}};
  double balancedness = 1;
  for (const auto& layer : routing.expert_share) {
    double sum = 0, mx = 0;
    for (double x : layer) {
      sum += x;
      mx = std::max(mx, x);
    }
    if (mx > 0) balancedness = std::min(balancedness, sum / layer.size() / mx);
  }
  const bool ep = kind_of(s) == StrategyKind::ep;
  const double dropped = assumed.dropped_known && ep ? assumed.dropped : expected_dropped(c, s, routing);
  r["load"] = {{"scope", "expected routing over one iteration"},
               {"routing", assumed.name},
               {"min_balancedness", balancedness}, {"dropped_total", std::llround(dropped)},
               {"layers", ojson::array()}};
  r["routing"] = {{"workload_routing", c.workload.routing}, {"assumed", assumed.description},
                  {"used_by", ep ? "ep: assignments per source rank and expert through the placement's replica deal"
                                 : "tp_pp: expert shares (its link bytes do not depend on the routing)"},
                  {"notes", assumed.notes}};
}

// The `memory` and `feasibility` sections: the estimate against the GPU's memory.
void memory_sections(ojson& r, const Config& c, const StrategyConfig& s, int eb) {
  const WorkloadConfig& w = c.workload;
  const MemoryEstimate est = estimate_memory(c, s, world_of(c), eb);
  const bool ok = double(est.total_bytes()) <= capacity_bytes(c);
  r["memory"] = {{"source", "estimate (simulated): peak_allocated_* repeat estimate_bytes"},
                 {"peak_allocated_bytes_max", est.total_bytes()}, {"peak_allocated_bytes_mean", est.total_bytes()},
                 {"estimate_bytes", est.total_bytes()}, {"estimate_weights_bytes", est.weights_bytes},
                 {"estimate_kv_cache_bytes", est.kv_cache_bytes}, {"estimate_activations_bytes", est.activations_bytes},
                 {"estimate_comm_buffers_bytes", est.comm_buffers_bytes}, {"capacity_bytes", capacity_bytes(c)},
                 {"fits", ok}};
  r["feasibility"] = {{"fits", ok},
                      {"reason", (ok ? "fits: " : "does not fit: ") + est.describe() + " per GPU vs " +
                                     std::to_string(static_cast<int>(c.cluster.gpu.memory_gb)) + " GB"},
                      {"largest_batch_that_fits", largest_batch_that_fits(c, s, eb)},
                      {"at_prompt_tokens", w.prompt_tokens},
                      {"largest_prompt_that_fits", largest_prompt_that_fits(c, s, eb)},
                      {"at_batch_sequences", w.batch_sequences}};
}

}  // namespace

ojson simulate_strategy(const Config& c, const StrategyConfig& s, const SimulateOptions& o) {
  const int eb = simulated_elem_bytes(c, o.backend);
  AssumedRouting assumed;
  if (o.routing.expert_share.empty() && !o.routing.has_sources()) {
    assumed = assumed_routing(c, s, o.trace.get());
  } else {
    assumed.routing = o.routing;
    assumed.name = assumed.description = "given by the caller";
  }
  CostOptions co;
  co.elem_bytes = eb;
  co.routing = assumed.routing;
  const CostModel model(c, s, co);
  const WorkloadConfig& w = c.workload;
  const SimulatedSteps steps = simulate_steps(model, s, w, o.hardware);
  const StepTiming& pre = steps.prefill;
  const StepTiming& dmean = steps.decode_mean;
  const double decode_total_s = dmean.time_ms * w.decode_steps / 1e3;
  const int64_t prefill_tokens = int64_t(w.batch_sequences) * w.prompt_tokens;

  ojson r;
  r["name"] = s.name;
  r["kind"] = s.kind;
  r["layout"] = strategy_layout(c, s, model.placement());
  r["prefill"] = {{"tokens", prefill_tokens},
                  {"time_s", {{"mean", pre.time_ms / 1e3}, {"min", pre.time_ms / 1e3}, {"max", pre.time_ms / 1e3}}},
                  {"tokens_per_s", pre.time_ms > 0 ? prefill_tokens / (pre.time_ms / 1e3) : 0}};
  r["decode"] = {{"batch", w.batch_sequences},
                 {"steps", w.decode_steps},
                 {"tpot_ms", {{"mean", dmean.time_ms}, {"p50", percentile(steps.tpots, 0.5)}, {"p99", percentile(steps.tpots, 0.99)}}},
                 {"tokens_per_s", decode_total_s > 0 ? double(w.batch_sequences) * w.decode_steps / decode_total_s : 0}};
  r["phases_ms"] = {{"prefill", phases_json(pre)}, {"decode_step", phases_json(dmean)}};
  const CostTotals tot = model.iteration_totals();
  routing_sections(r, c, s, tot, assumed);
  memory_sections(r, c, s, eb);

  // The runner's roofline over the predicted times (cost/roofline.hpp): one formula for both.
  ojson eff = {{"source", "counts: cost model, " + assumed.name + " routing; times: simulated prefill and mean decode step; "
                          "peaks: the config's cluster (the hardware profile's when one is given)"},
               {"flops_per_iteration", tot.flops()}};
  const ojson block = efficiency_block(iteration_counts(model, c), c.cluster, pre.time_ms / 1e3, dmean.time_ms / 1e3);
  for (const auto& [key, value] : block.items()) eff[key] = value;
  r["efficiency"] = eff;
  r["roofline"] = {{"prefill", roofline_json(pre)}, {"decode_step", roofline_json(dmean)}};
  ojson ov = {{"mode", s.overlap}, {"prefill", overlap_json(pre)}, {"decode_step", overlap_json(dmean)}};
  if (!steps.serial_tpots.empty()) {
    double m = 0;
    for (double v : steps.serial_tpots) m += v / steps.serial_tpots.size();
    ov["tpot_ms_without_overlap"] = m;
  }
  r["overlap"] = ov;
  r["verification"] = {{"checked", false}, {"reason", "simulated"}};
  return r;
}

ojson simulate_config(const Config& c, const SimulateOptions& o) {
  ojson strategies = ojson::array();
  bool all_fit = true;
  for (const StrategyConfig& s : c.strategies) {
    strategies.push_back(simulate_strategy(c, s, o));
    all_fit = all_fit && strategies.back()["memory"]["fits"].get<bool>();
  }
  RunContext ctx;
  ctx.mode = "simulated";
  ctx.backend = o.backend;
  ctx.compute_dtype = o.backend == "cpu" ? "fp32" : c.model.dtype;
  ctx.world_size = world_of(c);
  ctx.devices = {o.hardware.gpu_name};
  ctx.mpi = "none (simulated)";
  ctx.argv = o.argv;
  ojson doc = make_results(ctx, c, strategies, compare_strategies(strategies));
  doc["context"]["hardware"] = profile_to_json(o.hardware);
  if (!all_fit && o.feasible_variant) {
    // Same batch, the largest prompt every strategy fits: the paper's TPS = batch / TPOT stays comparable.
    const int eb = simulated_elem_bytes(c, o.backend);
    int64_t prompt = c.workload.prompt_tokens;
    for (const StrategyConfig& s : c.strategies) prompt = std::min(prompt, largest_prompt_that_fits(c, s, eb));
    ojson v = {{"change", "workload.prompt_tokens " + std::to_string(c.workload.prompt_tokens) + " -> " + std::to_string(prompt)},
               {"prompt_tokens", prompt}};
    if (prompt > 0) {
      Config x = c;
      x.workload.prompt_tokens = static_cast<int>(prompt);
      ojson vs = ojson::array();
      for (const StrategyConfig& s : x.strategies) {
        const ojson e = simulate_strategy(x, s, o);
        vs.push_back({{"name", s.name}, {"fits", e["memory"]["fits"]}, {"memory_bytes", e["memory"]["estimate_bytes"]},
                      {"prefill_tokens_per_s", e["prefill"]["tokens_per_s"]}, {"tpot_ms", e["decode"]["tpot_ms"]["mean"]},
                      {"decode_tokens_per_s", e["decode"]["tokens_per_s"]},
                      {"decode_roofline", e["roofline"]["decode_step"]}});
      }
      v["strategies"] = vs;
    } else {
      v["strategies"] = ojson::array();
      v["note"] = "no prompt length fits at this batch; see feasibility.largest_batch_that_fits";
    }
    doc["feasible_variant"] = v;
  }
  return doc;
}

namespace {

// `s` laid out on `ranks` ranks of `gpus_per_node` per node; why it cannot be, or empty.
std::string scale_strategy(const Config& c, int gpus_per_node, int ranks, StrategyConfig& s) {
  switch (kind_of(s)) {
    case StrategyKind::ep:
      // The expert-TP groups keep their size; ep takes the rest of the ranks.
      s.ep = ranks / s.expert_tp;
      if (ranks % s.expert_tp != 0 || gpus_per_node % s.expert_tp != 0)
        return "expert_tp " + std::to_string(s.expert_tp) + " does not divide " + std::to_string(ranks) + " ranks of " +
               std::to_string(gpus_per_node) + " per node";
      if (c.workload.batch_sequences % ranks != 0)
        return "batch_sequences " + std::to_string(c.workload.batch_sequences) + " not divisible by " +
               (s.expert_tp == 1 ? "ep " : "ep*expert_tp ") + std::to_string(ranks);
      return "";
    case StrategyKind::tp_pp:
      s.tp = gpus_per_node;
      s.pp = ranks / s.tp;
      if (c.model.layers % s.pp != 0)
        return "model.layers " + std::to_string(c.model.layers) + " cannot be split into pp = " + std::to_string(s.pp) +
               " stages (tp = " + std::to_string(s.tp) + ")";
      if (c.model.attention && c.model.heads % s.tp != 0) return "model.heads not divisible by tp = " + std::to_string(s.tp);
      return "";
  }
  return "";
}

}  // namespace

Config scale_config(const Config& c, int ranks, std::vector<std::string>& notes) {
  MOE_REQUIRE(ranks > 0, "sweep: ranks must be positive");
  Config x = c;
  const int gpn = c.cluster.gpus_per_node;
  if (ranks % gpn != 0 && ranks > gpn) throw ConfigError("--sweep", std::to_string(ranks) + " ranks is not a multiple of gpus_per_node " + std::to_string(gpn));
  x.cluster.gpus_per_node = std::min(gpn, ranks);
  x.cluster.nodes = std::max(1, ranks / gpn);
  x.strategies.clear();
  for (StrategyConfig s : c.strategies) {
    const std::string why = scale_strategy(c, x.cluster.gpus_per_node, ranks, s);
    if (why.empty()) {
      x.strategies.push_back(s);
    } else {
      notes.push_back(s.name + " (" + s.kind + ") skipped at " + std::to_string(ranks) + " GPUs: " + why);
    }
  }
  return x;
}

ojson simulate_sweep(const Config& c, const std::vector<int>& ranks, const SimulateOptions& o) {
  ojson out = ojson::array();
  for (int n : ranks) {
    std::vector<std::string> notes;
    const Config x = scale_config(c, n, notes);
    ojson doc;
    if (x.strategies.empty()) {
      doc = {{"schema_version", 1}, {"strategies", ojson::array()}, {"comparison", ojson::array()}};
    } else {
      validate_config(x);
      SimulateOptions so = o;
      so.feasible_variant = false;
      doc = simulate_config(x, so);
    }
    doc["sweep_point"] = {{"ranks", n}, {"nodes", x.cluster.nodes}, {"gpus_per_node", x.cluster.gpus_per_node}, {"notes", notes}};
    out.push_back(doc);
  }
  return out;
}

namespace {
std::string fmt(double v, int precision = 2) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(precision) << v;
  return os.str();
}
}  // namespace

void print_simulated(std::ostream& out, const ojson& r) {
  out << "moe-bench simulate  config " << r["config"]["name"].get<std::string>() << "  " << r["context"]["world_size"].get<int>()
      << " GPUs  hardware " << r["context"]["hardware"]["name"].get<std::string>() << "\n";
  // The assumed routing and its notes, once each; a note that holds for some strategies names them.
  std::vector<std::string> assumed, notes;
  std::vector<std::vector<std::string>> note_strategies;
  size_t num_strategies = 0;
  for (const auto& s : r["strategies"]) {
    if (!s.contains("routing")) continue;
    ++num_strategies;
    const std::string a = s["routing"]["assumed"].get<std::string>();
    if (std::find(assumed.begin(), assumed.end(), a) == assumed.end()) assumed.push_back(a);
    for (const auto& n : s["routing"]["notes"]) {
      const auto it = std::find(notes.begin(), notes.end(), n.get<std::string>());
      if (it == notes.end()) {
        notes.push_back(n.get<std::string>());
        note_strategies.push_back({});
      }
      note_strategies[size_t(std::find(notes.begin(), notes.end(), n.get<std::string>()) - notes.begin())].push_back(
          s["name"].get<std::string>());
    }
  }
  for (const std::string& a : assumed) out << "routing: " << a << "\n";
  for (size_t i = 0; i < notes.size(); ++i) {
    std::string who;
    if (note_strategies[i].size() < num_strategies)
      for (const std::string& n : note_strategies[i]) who += (who.empty() ? " (" : ", ") + n;
    out << "  note" << (who.empty() ? "" : who + ")") << ": " << notes[i] << "\n";
  }
  out << "\n";
  // The name column fits the longest strategy name.
  int name_w = 10;
  for (const auto& s : r["strategies"]) name_w = std::max<int>(name_w, static_cast<int>(s["name"].get<std::string>().size()));
  out << std::left << std::setw(name_w + 2) << "strategy" << std::setw(8) << "kind" << std::right << std::setw(15) << "prefill tok/s"
      << std::setw(14) << "decode tok/s" << std::setw(12) << "TPOT ms" << std::setw(10) << "overlap" << std::setw(11)
      << "memory" << std::setw(6) << "fits" << "  decode bound (phase: bound x ratio)\n";
  for (const auto& s : r["strategies"]) {
    const auto& ov = s["overlap"];
    const std::string overlap = ov["mode"] == "none" ? "none" : fmt(ov["decode_step"]["efficiency"].get<double>());
    out << std::left << std::setw(name_w + 2) << s["name"].get<std::string>() << std::setw(8) << s["kind"].get<std::string>()
        << std::right << std::setw(15) << fmt(s["prefill"]["tokens_per_s"].get<double>(), 0) << std::setw(14)
        << fmt(s["decode"]["tokens_per_s"].get<double>(), 0) << std::setw(12) << fmt(s["decode"]["tpot_ms"]["mean"].get<double>(), 3)
        << std::setw(10) << overlap << std::setw(11) << memory_text(s["memory"]["estimate_bytes"].get<int64_t>())
        << std::setw(6) << (s["memory"]["fits"].get<bool>() ? "yes" : "NO") << " ";
    for (const auto& [phase, b] : s["roofline"]["decode_step"].items())
      out << " " << phase << ":" << b["bound"].get<std::string>()
          << (b["ratio"].is_null() ? "" : "x" + fmt(b["ratio"].get<double>(), 1));
    out << "\n";
  }
  for (const auto& s : r["strategies"]) {
    if (s["memory"]["fits"].get<bool>()) continue;
    const auto& f = s["feasibility"];
    out << "\n" << s["name"].get<std::string>() << ": " << f["reason"].get<std::string>() << "\n";
    const int64_t weights = s["memory"]["estimate_weights_bytes"].get<int64_t>();
    const int64_t capacity = s["memory"]["capacity_bytes"].get<int64_t>();
    if (f["largest_batch_that_fits"].get<int64_t>() <= 0 && f["largest_prompt_that_fits"].get<int64_t>() <= 0 && weights >= capacity)
      out << "  the weights alone (" << memory_text(weights) << " per GPU) exceed the GPU memory (" << memory_text(capacity)
          << ") by " << memory_text(weights - capacity) << ": no batch or prompt fits; use more GPUs or a smaller model\n";
    else
      out << "  fits: batch <= " << f["largest_batch_that_fits"] << " at prompt " << f["at_prompt_tokens"] << ", or prompt <= "
          << f["largest_prompt_that_fits"] << " at batch " << f["at_batch_sequences"] << "\n";
  }
  if (r.contains("feasible_variant")) {
    const auto& v = r["feasible_variant"];
    out << "\nfeasible variant (" << v["change"].get<std::string>() << "):\n";
    if (v.contains("note")) out << "  none: " << v["note"].get<std::string>() << "\n";
    for (const auto& s : v["strategies"])
      out << "  " << std::left << std::setw(12) << s["name"].get<std::string>() << std::right << " TPOT "
          << fmt(s["tpot_ms"].get<double>(), 3) << " ms  decode " << fmt(s["decode_tokens_per_s"].get<double>(), 0)
          << " tok/s  prefill " << fmt(s["prefill_tokens_per_s"].get<double>(), 0) << " tok/s\n";
  }
  for (const auto& c : r["comparison"])
    out << "\n" << c["name"].get<std::string>() << " vs " << c["vs"].get<std::string>() << ": decode TPS x"
        << fmt(c["tps_ratio"].get<double>()) << ", TPOT " << tpot_change_text(c["tpot_ratio"].get<double>()) << ", prefill TPS x"
        << fmt(c["prefill_tps_ratio"].get<double>()) << "\n";
}

void print_sweep(std::ostream& out, const ojson& sweep) {
  out << std::right << std::setw(6) << "GPUs" << std::setw(6) << "nodes" << "  " << std::left << std::setw(28) << "strategy"
      << std::right << std::setw(12) << "TPOT ms" << std::setw(14) << "decode tok/s" << std::setw(15) << "prefill tok/s"
      << std::setw(11) << "memory" << std::setw(6) << "fits" << "\n";
  for (const auto& p : sweep) {
    const auto& sp = p["sweep_point"];
    for (const auto& s : p["strategies"]) {
      const auto& l = s["layout"];
      std::string layout;
      switch (strategy_kind_info(s["kind"].get<std::string>()).kind) {
        case StrategyKind::ep:
          layout = "ep=" + std::to_string(l["ep"].get<int>());
          if (l["expert_tp"].get<int>() > 1) layout += " expert_tp=" + std::to_string(l["expert_tp"].get<int>());
          break;
        case StrategyKind::tp_pp:
          layout = "tp=" + std::to_string(l["tp"].get<int>()) + " pp=" + std::to_string(l["pp"].get<int>());
          break;
      }
      out << std::right << std::setw(6) << sp["ranks"].get<int>() << std::setw(6) << sp["nodes"].get<int>() << "  " << std::left
          << std::setw(28) << (s["name"].get<std::string>() + " (" + layout + ")") << std::right << std::setw(12)
          << fmt(s["decode"]["tpot_ms"]["mean"].get<double>(), 3) << std::setw(14) << fmt(s["decode"]["tokens_per_s"].get<double>(), 0)
          << std::setw(15) << fmt(s["prefill"]["tokens_per_s"].get<double>(), 0) << std::setw(11)
          << memory_text(s["memory"]["estimate_bytes"].get<int64_t>()) << std::setw(6) << (s["memory"]["fits"].get<bool>() ? "yes" : "NO")
          << "\n";
    }
    for (const auto& n : sp["notes"]) out << std::setw(14) << "" << "note: " << n.get<std::string>() << "\n";
  }
}

}  // namespace moe
