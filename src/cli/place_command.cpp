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
#include "core/config.hpp"
#include "core/error.hpp"
#include "placement/balance_bound.hpp"
#include "placement/load_profile.hpp"
#include "placement/placers.hpp"
#include "placement/plan_json.hpp"
#include "placement/plan_metrics.hpp"

namespace moe {
namespace {

struct PlaceArgs {
  std::string config_path;
  std::string algorithm;          // empty: the first ep strategy's placement, else topology_aware
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

const StrategyConfig* first_ep(const Config& c) {
  for (const auto& s : c.strategies)
    if (s.kind == "ep") return &s;
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

int run_place(const PlaceArgs& a, const MpiSession& mpi) {
  if (mpi.rank() != 0) return 0;  // one process does the work; extra ranks have nothing to do
  Config config = load_config_file(a.config_path);
  validate_config(config);
  const ModelConfig& m = config.model;
  const Topology topo = Topology::from_config(config.cluster);
  const int G = topo.num_ranks();
  const int nics = config.cluster.inter_node.nics_per_node;
  const StrategyConfig* ep = first_ep(config);

  std::string algorithm = a.algorithm;
  if (algorithm.empty()) algorithm = ep ? ep->placement : "topology_aware";
  std::unique_ptr<Placer> placer;
  if (algorithm == "topology_aware") {
    TopologyAwareOptions o;
    o.nics_per_node = nics;  // the search targets the config's NICs, not the one-per-GPU default
    placer = make_topology_aware_placer(o);
  } else {
    try {
      placer = make_placer(algorithm);
    } catch (const ConfigError& e) {
      throw ConfigError(a.algorithm.empty() ? "strategies[" + std::to_string(ep - config.strategies.data()) + "].placement"
                                            : "--algorithm",
                        e.reason());
    }
  }

  // Expected routing, one iteration's tokens (prefill + decode) per source rank.
  const double tokens_per_rank =
      double(config.workload.batch_sequences) * (config.workload.prompt_tokens + config.workload.decode_steps) / G;
  LoadProfile profile;
  std::string profile_name;
  if (!a.load_profile_path.empty()) {
    if (!a.routing.empty()) throw ConfigError("--routing", "give either --routing or --load-profile, not both");
    profile = profile_from_results_file(a.load_profile_path, m.layers, m.experts, topo);
    profile_name = "results " + a.load_profile_path;
  } else {
    std::string spec = a.routing, path = "--routing";
    if (spec.empty() && ep && !ep->placement_profile.empty())
      spec = ep->placement_profile,
      path = "strategies[" + std::to_string(ep - config.strategies.data()) + "].placement_profile";
    if (spec.empty() && is_routing_distribution(config.workload.routing)) spec = config.workload.routing, path = "workload.routing";
    if (spec.empty()) spec = "uniform";
    const RoutingDistribution d = parse_routing_distribution(spec, path);
    profile = profile_from_distribution(d, m.layers, m.experts, m.top_k, topo, tokens_per_rank, m.seed);
    profile_name = spec;
  }

  // An unwritable plan path fails before any work.
  const std::string plan_path = a.out_path.empty() ? config.name + "-plan.json" : a.out_path;
  if (!a.no_write) {
    const std::string probe = plan_path + ".moe-bench-write-test";
    std::ofstream f(probe);
    if (!f) throw ConfigError("--out", "cannot write to '" + plan_path + "' (does the directory exist?)");
    f.close();
    std::remove(probe.c_str());
  }

  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  const Placement plan = placer->place(m.layers, m.experts, topo, profile);
  const double search_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  check_placement(plan, G);
  t0 = clock::now();
  const Placement rr = make_placer("round_robin")->place(m.layers, m.experts, topo, profile);
  const double rr_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();

  const double row_bytes = double(m.hidden) * dtype_bytes(parse_dtype(m.dtype));
  std::ostream& out = std::cout;
  out << "config '" << config.name << "': " << topo.nodes() << " nodes x " << topo.gpus_per_node() << " GPUs = " << G
      << " ranks, " << nics << " NICs per node; " << m.layers << " layers x " << m.experts << " experts, top-" << m.top_k
      << "\nrouting: " << profile_name << "; rows of " << fmt_bytes(row_bytes) << " (hidden " << m.hidden << " x "
      << m.dtype << "), dispatch + combine\n"
      << "search: " << algorithm << " " << fmt(search_ms, 2) << " ms, round_robin " << fmt(rr_ms, 2) << " ms\n\n";
  out << "    " << std::left << std::setw(15) << "algorithm" << std::right << std::setw(8) << "balance" << std::setw(14)
      << "intra-node" << std::setw(14) << "inter-node" << std::setw(13) << "busiest NIC" << " " << std::left
      << std::setw(11) << "(node/nic)" << std::right << std::setw(10) << "busiest port" << " (rank)\n";
  const bool details = a.details || G <= 64;
  Totals tot_plan, tot_rr;
  std::vector<std::vector<double>> uniform;
  for (int l = 0; l < m.layers; ++l) {
    const auto& tokens = profile_layer(profile, l, G, m.experts, uniform);
    const PlanMetrics pm = compute_plan_metrics(plan.layers[l], topo, nics, row_bytes, tokens);
    const PlanMetrics rm = compute_plan_metrics(rr.layers[l], topo, nics, row_bytes, tokens);
    tot_plan.add(pm);
    tot_rr.add(rm);
    out << "layer " << l << "\n";
    print_row(out, algorithm, pm, nics);
    if (algorithm != "round_robin") print_row(out, "round_robin", rm, nics);
    if (m.experts <= G) {  // the integer-replica caps on balancedness (balance_bound.hpp)
      std::vector<double> w(m.experts, 0);
      std::vector<double> node_w(size_t(m.experts) * topo.nodes(), 0);
      const int num_nodes = topo.nodes();
      for (int s = 0; s < G; ++s) {
        const int node = topo.node_of(s);
        const std::vector<double>& row = tokens[s];
        for (int e = 0; e < m.experts; ++e) w[e] += row[e], node_w[size_t(e) * num_nodes + node] += row[e];
      }
      bool even = true;  // every node sends an equal share of each expert's load
      for (int e = 0; e < m.experts; ++e)
        for (int n = 0; n < topo.nodes(); ++n)
          even = even && std::abs(node_w[size_t(e) * topo.nodes() + n] - w[e] / topo.nodes()) <= 1e-9 * (1 + w[e]);
      out << "    bound with one expert per GPU: " << fmt(best_balancedness_bound(w, G).balancedness, 3);
      if (even) out << ", with same-node-first replicas: " << fmt(same_node_first_bound(w, G, topo.nodes()), 3);
      out << " (" << algorithm << " " << fmt(pm.balancedness, 3) << ")\n";
    }
    if (details) {
      out << "    experts -> ranks: " << describe_replicas(plan.layers[l]) << "\n    tokens per GPU:";
      for (double t : pm.tokens_per_gpu) out << " " << fmt(t, 0);
      out << "\n";
    }
  }
  out << "\nall layers: " << algorithm << " min balancedness " << fmt(tot_plan.min_balancedness, 3) << ", inter-node "
      << fmt_bytes(tot_plan.inter) << ", busiest NIC " << fmt_bytes(tot_plan.max_nic) << ", busiest port "
      << fmt_bytes(tot_plan.max_port) << "\n";
  if (algorithm != "round_robin")
    out << "            round_robin min balancedness " << fmt(tot_rr.min_balancedness, 3) << ", inter-node "
        << fmt_bytes(tot_rr.inter) << ", busiest NIC " << fmt_bytes(tot_rr.max_nic) << ", busiest port "
        << fmt_bytes(tot_rr.max_port) << "\n";
  out << "search time: " << fmt(search_ms, 2) << " ms (" << algorithm << ", " << m.layers << " layers)\n";

  if (!a.no_write) {
    write_plan_file(plan_path, plan, G, profile_name);
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
                    "round_robin | balanced | topology_aware (default: the first ep strategy's placement)");
  auto* lp = c.app->add_option("--load-profile", args->load_profile_path,
                               "Results JSON of an earlier run: plan for its tokens per expert");
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
