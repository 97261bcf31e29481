// The simulate subcommand: options, profile resolution (built-in defaults with the config's peaks,
// a --hardware file, --set overrides), single config or --sweep, table on stdout, JSON to --out.
#include "cli/simulate_command.hpp"

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "core/atomic_file.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "routing/routing_source.hpp"
#include "sim/simulate.hpp"

namespace moe {
namespace {

struct SimulateArgs {
  std::string config_path;
  std::string hardware_path;
  std::vector<std::string> overrides;
  std::string out_path;
  std::string sweep;
  std::string backend;   // empty: cpu when run.backend is cpu, else cuda
  std::vector<std::string> config_changes;  // "model.attention=false", "strategies.1.chunks=1"
};

// Applies "a.b.0.c=value" (value parsed as JSON, else taken as a string) to the config JSON.
// Errors name the --with argument, the prefix that was valid and what was expected there.
void patch_config(nlohmann::json& j, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw ConfigError("--with", "expected key=value, got '" + assignment + "'");
  const std::string where = "--with " + assignment;
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(assignment.substr(eq + 1));
  } catch (const std::exception&) {
    value = assignment.substr(eq + 1);
  }
  nlohmann::json* at = &j;
  std::string prefix;  // the part of the key walked so far
  std::stringstream ss(assignment.substr(0, eq));
  for (std::string part; std::getline(ss, part, '.');) {
    const std::string shown = prefix.empty() ? "the config" : "'" + prefix + "'";
    if (at->is_array()) {
      size_t i = 0, used = 0;
      try {
        i = std::stoul(part, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != part.size())
        throw ConfigError(where, shown + " is an array: '" + part + "' must be an index 0.." + std::to_string(at->size() - 1));
      if (i >= at->size())
        throw ConfigError(where, "index " + part + " out of range: " + shown + " has " + std::to_string(at->size()) +
                                     " entries (0.." + std::to_string(at->size() - 1) + ")");
      at = &(*at)[i];
    } else if (at->is_object() || at->is_null()) {
      at = &(*at)[part];  // unknown keys are rejected when the config is parsed
    } else {
      throw ConfigError(where, shown + " is " + std::string(at->type_name()) + " " + at->dump() + ", not an object: '" +
                                   part + "' cannot be set inside it");
    }
    prefix += (prefix.empty() ? "" : ".") + part;
  }
  *at = value;
}

// The config path of a --with key in the parser's notation: "strategies.1.chunks" -> "strategies[1].chunks".
std::string config_path_of(const std::string& key) {
  std::string out;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    const bool index = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    out += index ? "[" + part + "]" : (out.empty() ? "" : ".") + part;
  }
  return out;
}

// "ep=8,16,32" -> {8, 16, 32}
std::vector<int> parse_sweep(const std::string& text) {
  const std::string prefix = "ep=";
  if (text.rfind(prefix, 0) != 0) throw ConfigError("--sweep", "expected ep=N1,N2,..., got '" + text + "'");
  std::vector<int> out;
  std::stringstream ss(text.substr(prefix.size()));
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      const int n = std::stoi(item, &used);
      if (used != item.size() || n < 1) throw std::invalid_argument(item);
      out.push_back(n);
    } catch (const std::exception&) {
      throw ConfigError("--sweep", "'" + item + "' is not a positive integer");
    }
  }
  if (out.empty()) throw ConfigError("--sweep", "no values given");
  return out;
}

int run_simulate(const SimulateArgs& a, const MpiSession& mpi, const std::vector<std::string>& argv) {
  if (mpi.size() > 1 && mpi.rank() != 0) return 0;  // one process is enough; extra ranks have nothing to do
  const auto t0 = std::chrono::steady_clock::now();
  std::ifstream in(a.config_path);
  if (!in) throw ConfigError("--config", "cannot open config file '" + a.config_path + "'");
  nlohmann::json cj;
  try {
    cj = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw ConfigError(a.config_path, std::string("not valid JSON: ") + e.what());
  }
  for (const std::string& change : a.config_changes) patch_config(cj, change);
  Config config;
  try {
    config = parse_config(cj);
    validate_config(config);
  } catch (const ConfigError& e) {
    // A value set by --with: name the argument once, not the JSON path twice.
    for (const std::string& change : a.config_changes) {
      const std::string path = config_path_of(change.substr(0, change.find('=')));
      if (!e.path().empty() && (e.path() == path || e.path().rfind(path + ".", 0) == 0 || e.path().rfind(path + "[", 0) == 0))
        throw ConfigError("--with " + change, (e.path() == path ? "" : e.path() + ": ") + e.reason());
    }
    throw;
  }
  SimulateOptions o;
  o.argv = argv;
  o.backend = !a.backend.empty() ? a.backend : (config.run.backend == "cpu" ? "cpu" : "cuda");
  std::string trace_path, trace_strategy;
  if (parse_trace_spec(config.workload.routing, trace_path, trace_strategy)) {
    // A replayed trace is simulated with its exact counts per source rank and step.
    std::ifstream tin(trace_path);
    if (!tin) throw ConfigError("workload.routing", "cannot open routing trace results file '" + trace_path + "'");
    nlohmann::json results;
    try {
      results = nlohmann::json::parse(tin);
    } catch (const std::exception& e) {
      throw ConfigError("workload.routing", "invalid JSON in '" + trace_path + "': " + e.what());
    }
    RoutingTrace trace = trace_from_results(results, trace_strategy, trace_path);
    RoutingSource::from_trace(config, trace);  // checks the trace fits the config
    o.trace = std::make_shared<const RoutingTrace>(std::move(trace));
  }
  o.hardware = default_profile(config.cluster);
  if (!a.hardware_path.empty()) o.hardware = load_profile_file(a.hardware_path, o.hardware);
  // A --with of a cluster value the profile also holds changes the profile: it would otherwise be
  // silently replaced by the --hardware file's value. --set still has the last word.
  for (const std::string& change : a.config_changes) {
    const std::string key = change.substr(0, change.find('='));
    static const std::set<std::string> kProfileKeys = {
        "gpu.name", "gpu.memory_gb", "gpu.peak_tflops", "gpu.hbm_gb_s", "intra_node.bandwidth_gb_s",
        "intra_node.latency_us", "inter_node.bandwidth_gb_s", "inter_node.latency_us", "inter_node.nics_per_node"};
    if (key.rfind("cluster.", 0) != 0 || !kProfileKeys.count(key.substr(8))) continue;
    apply_profile_override(o.hardware, change.substr(8));
    if (!a.hardware_path.empty())
      std::cerr << "simulate: --with " << change << " also sets " << key.substr(8) << " of the hardware profile '"
                << a.hardware_path << "'\n";
  }
  for (const std::string& s : a.overrides) apply_profile_override(o.hardware, s);
  apply_profile_to_cluster(o.hardware, config.cluster);  // the profile describes the hardware simulated
  if (!a.out_path.empty()) {
    std::ofstream probe(a.out_path + ".moe-bench-write-test");
    if (!probe) throw ConfigError("--out", "cannot write to '" + a.out_path + "' (does the directory exist?)");
    probe.close();
    std::remove((a.out_path + ".moe-bench-write-test").c_str());
  }

  nlohmann::ordered_json out;
  if (a.sweep.empty()) {
    out = simulate_config(config, o);
    print_simulated(std::cout, out);
  } else {
    out = simulate_sweep(config, parse_sweep(a.sweep), o);
    print_sweep(std::cout, out);
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "\nsimulated in " << static_cast<int>(ms + 0.5) << " ms\n";
  if (!a.out_path.empty()) {
    write_file_atomic(a.out_path, out.dump(2) + "\n");
    std::cout << "results written to " << a.out_path << "\n";
  }
  return 0;
}

}  // namespace

Command add_simulate_command(CLI::App& app) {
  auto args = std::make_shared<SimulateArgs>();
  Command c;
  c.app = app.add_subcommand("simulate", "Predict TPS/TPOT, phases, traffic, memory and roofline bounds without a cluster");
  c.app->add_option("-c,--config", args->config_path, "Config JSON")->required();
  c.app->add_option("--hardware", args->hardware_path,
                    "Hardware profile JSON (e.g. configs/hardware/h100-sxm-ndr.json); default: built-in H100 "
                    "efficiencies with the config's cluster peaks");
  c.app->add_option("--with", args->config_changes,
                    "Change the config before simulating, e.g. --with model.attention=false --with strategies.1.chunks=1 "
                    "(repeatable)");
  c.app->add_option("--set", args->overrides, "Override a profile value, e.g. --set gpu.gemm_efficiency=0.6 (repeatable)");
  c.app->add_option("-o,--out", args->out_path, "Write the results JSON (an array of documents with --sweep)");
  c.app->add_option("--sweep", args->sweep,
                    "Scale the cluster: ep=8,16,...; ranks = ep, nodes = ranks / gpus_per_node, baseline tp = "
                    "gpus_per_node, pp = ranks / tp; an ep strategy with expert_tp > 1 keeps it (ep = ranks / expert_tp)");
  c.app->add_option("--backend", args->backend, "Modeled backend: cuda (model dtype) or cpu (fp32); default from run.backend")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  c.run = [args](MpiSession& mpi, const std::vector<std::string>& argv) { return run_simulate(*args, mpi, argv); };
  return c;
}

}  // namespace moe
