// The place subcommand: resolves the algorithm and the expected routing (results file, --routing,
// the ep strategy's placement_profile, workload.routing, else uniform), times the search, prints per-layer
// metrics for the plan, for round_robin and the integer-replica balancedness bound, writes the plan file.
#include "cli/place_command.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "backend/backend.hpp"
#include "core/atomic_file.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "placement/balance_bound.hpp"
#include "placement/load_profile.hpp"
#include "placement/placers.hpp"
#include "placement/plan_json.hpp"
#include "placement/plan_metrics.hpp"
#include "placement/strategy_plan.hpp"

namespace moe {
namespace {

struct PlaceArgs {
  std::string config_path;
  std::string algorithm;          // empty: the chosen ep strategy's placement, else topology_aware
  std::string strategy;           // ep strategy whose placement and placement_profile apply; empty: see chosen_ep
  std::string load_profile_path;  // results JSON of an earlier run
  std::string routing;            // distribution spec
  std::string out_path;           // empty: <config name>-plan.json
  bool no_write = false;
  bool details = false;
};

std::string fmt_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

std::string fmt(double x, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << x;
  return os.str();
}

// The ep strategy whose placement (the default algorithm) and placement_profile apply: --strategy,
// else the first ep strategy that does not use round_robin (the plan is compared with round_robin;
// comparing round_robin with itself says nothing), else the first ep strategy.
const StrategyConfig* chosen_ep(const Config& c, const std::string& name) {
  if (!name.empty()) {
    std::string names;
    for (const auto& s : c.strategies) {
      if (s.name == name && kind_of(s) == StrategyKind::ep) return &s;
      if (s.name == name) throw ConfigError("--strategy", "strategy '" + name + "' is of kind " + s.kind + ", not ep");
      if (kind_of(s) == StrategyKind::ep) names += (names.empty() ? "" : ", ") + s.name;
    }
    throw ConfigError("--strategy", "no ep strategy named '" + name + "' in the config (ep strategies: " + names + ")");
  }
  for (const auto& s : c.strategies)
    if (kind_of(s) == StrategyKind::ep && s.placement != "round_robin") return &s;
  for (const auto& s : c.strategies)
    if (kind_of(s) == StrategyKind::ep) return &s;
  return nullptr;
}

// The expert -> ranks map of one layer, e.g. "e0:3,17 e1:5".
std::string describe_replicas(const LayerPlacement& lp) {
  std::ostringstream os;
  for (int e = 0; e < lp.num_experts; ++e) {
    os << (e ? " " : "") << "e" << e << ":";
    for (size_t i = 0; i < lp.replicas[e].size(); ++i) os << (i ? "," : "") << lp.replicas[e][i];
  }
  return os.str();
}

void print_row(std::ostream& out, const std::string& label, const PlanMetrics& m, int nics) {
  out << "    " << std::left << std::setw(15) << label << std::right << std::setw(8) << fmt(m.balancedness, 3)
      << std::setw(14) << fmt_bytes(m.intra_node_bytes) << std::setw(14) << fmt_bytes(m.inter_node_bytes)
      << std::setw(13) << fmt_bytes(m.max_inter_link_bytes) << " "
      << std::left << std::setw(11)
      << (m.busiest_nic >= 0 ? "(n" + std::to_string(m.busiest_nic / nics) + "/" + std::to_string(m.busiest_nic % nics) + ")"
                             : "")
      << std::right << std::setw(10) << fmt_bytes(m.max_intra_link_bytes) << " "
      << (m.busiest_port >= 0 ? "(r" + std::to_string(m.busiest_port) + ")" : "") << "\n";
}

// A layer's metrics for the plan file (bytes: expected per iteration, dispatch + combine).
nlohmann::ordered_json metrics_json(const PlanMetrics& m, int nics) {
  nlohmann::ordered_json j;
  j["balancedness"] = m.balancedness;
  j["tokens_per_gpu"] = m.tokens_per_gpu;
  j["intra_node_bytes"] = m.intra_node_bytes;
  j["inter_node_bytes"] = m.inter_node_bytes;
  j["max_inter_node_link_bytes"] = m.max_inter_link_bytes;
  j["busiest_nic"] = m.busiest_nic < 0 ? nlohmann::ordered_json(nullptr)
                                       : nlohmann::ordered_json{{"node", m.busiest_nic / nics}, {"nic", m.busiest_nic % nics}};
  j["max_intra_node_link_bytes"] = m.max_intra_link_bytes;
  j["busiest_port"] = m.busiest_port < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(m.busiest_port);
  return j;
}

struct Totals {
  double min_balancedness = 1, inter = 0, intra = 0, max_nic = 0, max_port = 0;
  void add(const PlanMetrics& m) {
    min_balancedness = std::min(min_balancedness, m.balancedness);
    inter += m.inter_node_bytes;
    intra += m.intra_node_bytes;
    max_nic = std::max(max_nic, m.max_inter_link_bytes);
    max_port = std::max(max_port, m.max_intra_link_bytes);
  }
};

// The placer of --algorithm, else of the ep strategy, else topology_aware.
std::unique_ptr<Placer> chosen_placer(const PlaceArgs& a, const Config& config, const StrategyConfig* ep,
                                      const std::string& algorithm) {
  try {
    return strategy_placer(config, algorithm);
  } catch (const ConfigError& e) {
    throw ConfigError(a.algorithm.empty() ? "strategies[" + std::to_string(ep - config.strategies.data()) + "].placement"
                                          : "--algorithm",
                      e.reason());
  }
}

// The expected routing the plan is made for, one iteration's tokens (prefill + decode) per source
// rank: --load-profile, else --routing, the strategy's placement_profile, workload.routing when it
// is a distribution, or uniform.
struct ExpectedRouting {
  LoadProfile profile;
  std::string name;
};
ExpectedRouting expected_routing(const PlaceArgs& a, const Config& config, const StrategyConfig* ep, const Topology& topo) {
  const ModelConfig& m = config.model;
  if (!a.load_profile_path.empty()) {
    if (!a.routing.empty()) throw ConfigError("--routing", "give either --routing or --load-profile, not both");
    return {profile_from_results_file(a.load_profile_path, m.layers, m.experts, topo), "results " + a.load_profile_path};
  }
  const double tokens_per_rank = double(config.workload.batch_sequences) *
                                 (config.workload.prompt_tokens + config.workload.decode_steps) / topo.num_ranks();
  std::string spec = a.routing, path = "--routing";
  if (spec.empty() && ep && !ep->placement_profile.empty())
    spec = ep->placement_profile,
    path = "strategies[" + std::to_string(ep - config.strategies.data()) + "].placement_profile";
  if (spec.empty() && is_routing_distribution(config.workload.routing)) spec = config.workload.routing, path = "workload.routing";
  if (spec.empty()) spec = "uniform";
  const RoutingDistribution d = parse_routing_distribution(spec, path);
  return {profile_from_distribution(d, m.layers, m.experts, m.top_k, topo, tokens_per_rank, m.seed), spec};
}

// An unwritable plan path fails before any work.
void check_writable(const std::string& plan_path) {
  const std::string probe = plan_path + ".moe-bench-write-test";
  std::ofstream f(probe);
  if (!f) throw ConfigError("--out", "cannot write to '" + plan_path + "' (does the directory exist?)");
  f.close();
  std::remove(probe.c_str());
}

// The integer-replica caps on one layer's balancedness (balance_bound.hpp), printed after `achieved`
// and returned for the plan file; null when there are more experts than GPUs.
nlohmann::ordered_json balancedness_bounds(std::ostream& out, const std::vector<std::vector<double>>& tokens,
                                           const Topology& topo, int num_experts, const std::string& algorithm,
                                           double achieved) {
  const int G = topo.num_ranks();
  if (num_experts > G) return nullptr;
  std::vector<double> w(num_experts, 0);
  std::vector<double> node_w(size_t(num_experts) * topo.nodes(), 0);
  const int num_nodes = topo.nodes();
  for (int s = 0; s < G; ++s) {
    const int node = topo.node_of(s);
    const std::vector<double>& row = tokens[s];
    for (int e = 0; e < num_experts; ++e) w[e] += row[e], node_w[size_t(e) * num_nodes + node] += row[e];
  }
  bool even = true;  // every node sends an equal share of each expert's load
  for (int e = 0; e < num_experts; ++e)
    for (int n = 0; n < topo.nodes(); ++n)
      even = even && std::abs(node_w[size_t(e) * topo.nodes() + n] - w[e] / topo.nodes()) <= 1e-9 * (1 + w[e]);
  const double bound = best_balancedness_bound(w, G).balancedness;
  out << "    bound with one expert per GPU: " << fmt(bound, 3);
  nlohmann::ordered_json j = {{"one_expert_per_gpu", bound}};
  if (even) {
    const double same_node = same_node_first_bound(w, G, topo.nodes());
    out << ", with same-node-first replicas: " << fmt(same_node, 3);
    j["same_node_first"] = same_node;
  }
  out << " (" << algorithm << " " << fmt(achieved, 3) << ")\n";
  return j;
}

void print_totals(std::ostream& out, const std::string& label, const Totals& t) {
  out << label << " min balancedness " << fmt(t.min_balancedness, 3) << ", inter-node " << fmt_bytes(t.inter)
      << ", busiest NIC " << fmt_bytes(t.max_nic) << ", busiest port " << fmt_bytes(t.max_port) << "\n";
}

nlohmann::ordered_json totals_json(const Totals& t) {
  return {{"min_balancedness", t.min_balancedness}, {"intra_node_bytes", t.intra}, {"inter_node_bytes", t.inter},
          {"max_inter_node_link_bytes", t.max_nic}, {"max_intra_node_link_bytes", t.max_port}};
}

void print_header(std::ostream& out, const PlaceArgs& a, const Config& config, const Topology& topo, const StrategyConfig* ep,
                  const std::string& algorithm, const std::string& routing, double row_bytes, double search_ms, double rr_ms) {
  const ModelConfig& m = config.model;
  out << "config '" << config.name << "': " << topo.nodes() << " nodes x " << topo.gpus_per_node() << " GPUs = "
      << topo.num_ranks() << " ranks, " << config.cluster.inter_node.nics_per_node << " NICs per node; " << m.layers
      << " layers x " << m.experts << " experts, top-" << m.top_k << "\nrouting: " << routing << "; rows of "
      << fmt_bytes(row_bytes) << " (hidden " << m.hidden << " x " << m.dtype << "), dispatch + combine\n"
      << "algorithm: " << algorithm
      << (a.algorithm.empty() ? (ep ? " (placement of strategy '" + ep->name + "')" : std::string(" (no ep strategy: default)"))
                              : std::string(" (--algorithm)"))
      << (ep && ep->expert_tp > 1 ? "\nexpert_tp " + std::to_string(ep->expert_tp) + ": whole experts on " +
                                         std::to_string(topo.num_ranks() / ep->expert_tp) + " expert-TP groups of " +
                                         std::to_string(ep->expert_tp) + " ranks; every row goes to each member's shard"
                                   : std::string())
      << "\nsearch: " << algorithm << " " << fmt(search_ms, 2) << " ms, round_robin " << fmt(rr_ms, 2) << " ms\n\n";
  out << "    " << std::left << std::setw(15) << "algorithm" << std::right << std::setw(8) << "balance" << std::setw(14)
      << "intra-node" << std::setw(14) << "inter-node" << std::setw(13) << "busiest NIC" << " " << std::left
      << std::setw(11) << "(node/nic)" << std::right << std::setw(10) << "busiest port" << " (rank)\n";
}

// One layer's rows of the table (the plan, round_robin, the balancedness bounds) and its metrics
// for the plan file.
nlohmann::ordered_json layer_report(std::ostream& out, const PlanMetrics& pm, const PlanMetrics& rm,
                                    const std::vector<std::vector<double>>& tokens, const Topology& topo, int nics,
                                    int num_experts, const std::string& algorithm) {
  nlohmann::ordered_json layer_metrics = metrics_json(pm, nics);
  layer_metrics["round_robin"] = metrics_json(rm, nics);
  print_row(out, algorithm, pm, nics);
  if (algorithm != "round_robin") print_row(out, "round_robin", rm, nics);
  nlohmann::ordered_json bounds = balancedness_bounds(out, tokens, topo, num_experts, algorithm, pm.balancedness);
  if (!bounds.is_null()) layer_metrics["balancedness_bound"] = std::move(bounds);
  return layer_metrics;
}

// The plan and round_robin over the placement units of the chosen strategy (ranks, or expert-TP
// groups), and the placements over ranks their metrics are computed on.
struct Plans {
  Topology units{1, 1};      // what the placer sees
  LoadProfile unit_profile;  // tokens per (unit, expert)
  Placement plan, rr;        // over the units: what the plan file holds
  Placement plan_ranks, rr_ranks;
  LoadProfile rank_profile;  // tokens per (rank, expert or shard)
  double search_ms = 0, rr_ms = 0;
};

Plans make_plans(const Config& config, const StrategyConfig* ep, const Placer& placer, const Topology& topo,
                 const LoadProfile& profile) {
  const ModelConfig& m = config.model;
  const int etp = ep ? ep->expert_tp : 1;
  Plans p;
  p.units = ep ? placement_unit_topology(config, *ep) : topo;
  p.unit_profile = group_load_profile(profile, etp);
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  p.plan = placer.place(m.layers, m.experts, p.units, p.unit_profile);
  p.search_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  check_placement(p.plan, p.units.num_ranks());
  t0 = clock::now();
  p.rr = make_placer("round_robin")->place(m.layers, m.experts, p.units, p.unit_profile);
  p.rr_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  p.plan_ranks = shard_placement(p.plan, etp);
  p.rr_ranks = shard_placement(p.rr, etp);
  p.rank_profile = shard_load_profile(profile, etp);
  return p;
}

int run_place(const PlaceArgs& a, const MpiSession& mpi) {
  if (mpi.rank() != 0) return 0;  // one process does the work; extra ranks have nothing to do
  Config config = load_config_file(a.config_path);
  validate_config(config);
  const ModelConfig& m = config.model;
  const Topology topo = Topology::from_config(config.cluster);
  const int G = topo.num_ranks();
  const int nics = config.cluster.inter_node.nics_per_node;
  const StrategyConfig* ep = chosen_ep(config, a.strategy);
  const int etp = ep ? ep->expert_tp : 1;
  const std::string algorithm = !a.algorithm.empty() ? a.algorithm : ep ? ep->placement : "topology_aware";
  const std::unique_ptr<Placer> placer = chosen_placer(a, config, ep, algorithm);
  const ExpectedRouting routing = expected_routing(a, config, ep, topo);
  const std::string plan_path = a.out_path.empty() ? config.name + "-plan.json" : a.out_path;
  if (!a.no_write) check_writable(plan_path);
  const Plans p = make_plans(config, ep, *placer, topo, routing.profile);

  const double row_bytes = double(m.hidden) * dtype_bytes(parse_dtype(m.dtype));
  std::ostream& out = std::cout;
  print_header(out, a, config, topo, ep, algorithm, routing.name, row_bytes, p.search_ms, p.rr_ms);
  const bool details = a.details || G <= 64;
  Totals tot_plan, tot_rr;
  std::vector<std::vector<double>> uniform, uniform_units;
  nlohmann::ordered_json plan_json = placement_to_json(p.plan, p.units.num_ranks(), routing.name, etp);
  for (int l = 0; l < m.layers; ++l) {
    const auto& tokens = profile_layer(p.rank_profile, l, G, m.experts * etp, uniform);
    const PlanMetrics pm = compute_plan_metrics(p.plan_ranks.layers[l], topo, nics, row_bytes, tokens);
    const PlanMetrics rm = compute_plan_metrics(p.rr_ranks.layers[l], topo, nics, row_bytes, tokens);
    tot_plan.add(pm);
    tot_rr.add(rm);
    out << "layer " << l << "\n";
    // The balancedness bounds hold for whole experts on the units (a group's ranks carry equal loads).
    const auto& unit_tokens = profile_layer(p.unit_profile, l, p.units.num_ranks(), m.experts, uniform_units);
    plan_json["layers"][l]["metrics"] = layer_report(out, pm, rm, unit_tokens, p.units, nics, m.experts, algorithm);
    if (details) {
      out << (etp > 1 ? "    experts -> expert-TP groups: " : "    experts -> ranks: ") << describe_replicas(p.plan.layers[l])
          << "\n    tokens per GPU:";
      for (double t : pm.tokens_per_gpu) out << " " << fmt(t, 0);
      out << "\n";
    }
  }
  out << "\n";
  print_totals(out, "all layers: " + algorithm, tot_plan);
  if (algorithm != "round_robin") print_totals(out, "            round_robin", tot_rr);
  out << "search time: " << fmt(p.search_ms, 2) << " ms (" << algorithm << ", " << m.layers << " layers)\n";

  plan_json["metrics"] = {{"routing", routing.name},
                          {"bytes_per_row", row_bytes},
                          {"units", "bytes: expected per iteration over all layers' dispatch and combine; tokens: assignments"},
                          {"all_layers", totals_json(tot_plan)},
                          {"round_robin", totals_json(tot_rr)}};
  if (!a.no_write) {
    write_file_atomic(plan_path, plan_json.dump() + "\n");
    out << "plan written to " << plan_path << "\n";
  }
  return 0;
}

}  // namespace

Command add_place_command(CLI::App& app) {
  auto args = std::make_shared<PlaceArgs>();
  Command c;
  c.app = app.add_subcommand("place", "Place experts on ranks for a config and show expected load and link traffic");
  c.app->add_option("-c,--config", args->config_path, "Config JSON")->required();
  c.app->add_option("--algorithm", args->algorithm,
                    "round_robin | balanced | topology_aware (default: the ep strategy's placement, see --strategy)");
  c.app->add_option("--strategy", args->strategy,
                    "ep strategy whose placement and placement_profile to use (default: the first ep strategy not "
                    "using round_robin, else the first ep strategy)");
  auto* lp = c.app->add_option("--load-profile", args->load_profile_path,
                               "FILE[#strategy]: results JSON of an earlier run: plan for the tokens per expert it "
                               "counted (that strategy's, else the first ep strategy's)");
  c.app->add_option("--routing", args->routing,
                    "Routing distribution to plan for: uniform | zipf:s | hot:f, optionally ,local:p "
                    "(default: the ep strategy's placement_profile, else workload.routing, else uniform)")
      ->excludes(lp);
  c.app->add_option("-o,--out", args->out_path, "Plan JSON path (default: <config name>-plan.json)");
  c.app->add_flag("--no-write", args->no_write, "Do not write the plan file");
  c.app->add_flag("--details", args->details, "Print expert -> ranks and tokens per GPU for every layer (default when <= 64 ranks)");
  c.run = [args](MpiSession& mpi, const std::vector<std::string>&) { return run_place(*args, mpi); };
  return c;
}

}  // namespace moe
