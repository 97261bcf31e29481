// Reading the input files of `run` and `validate` (see inputs.hpp).
#include "cli/inputs.hpp"

#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "core/error.hpp"
#include "placement/load_profile.hpp"
#include "placement/plan_json.hpp"
#include "placement/strategy_plan.hpp"
#include "topology/topology.hpp"

namespace moe {

std::string read_text_everywhere(const MpiSession& mpi, const std::string& path, const std::string& where,
                                 const std::string& what) {
  std::string text, error;
  if (mpi.rank() == 0) {
    std::ifstream in(path);
    if (!in) {
      error = "cannot open " + what + " '" + path + "'";
    } else {
      std::ostringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
  }
  error = mpi.broadcast_string(error);
  if (!error.empty()) throw ConfigError(where, error);
  return mpi.broadcast_string(text);
}

Config load_config_everywhere(const MpiSession& mpi, const std::string& path) {
  return parse_config_text(read_text_everywhere(mpi, path, "", "config file"), path);
}

nlohmann::json parse_json_text(const std::string& text, const std::string& where, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(where, "invalid JSON in '" + path + "': " + e.what());
  }
}

std::shared_ptr<const RoutingSource> load_routing_source(const MpiSession& mpi, const Config& config) {
  std::string path, strategy;
  if (!parse_trace_spec(config.workload.routing, path, strategy)) return RoutingSource::from_config(config);
  const nlohmann::json results =
      parse_json_text(read_text_everywhere(mpi, path, "workload.routing", "routing trace results file"), "workload.routing", path);
  return RoutingSource::from_trace(config, trace_from_results(results, strategy, path));
}

std::map<std::string, Placement> load_plans(const MpiSession& mpi, const Config& config, const std::vector<std::string>& specs,
                                            std::map<std::string, std::string>& paths,
                                            std::map<std::string, std::pair<LoadProfile, std::string>>& plan_load) {
  std::map<std::string, Placement> plans;
  for (const std::string& spec : specs) {
    const size_t eq = spec.find('=');
    const std::string name = eq == std::string::npos ? "" : spec.substr(0, eq);
    const std::string path = eq == std::string::npos ? spec : spec.substr(eq + 1);
    std::vector<const StrategyConfig*> targets;
    for (const auto& s : config.strategies)
      if (kind_of(s) == StrategyKind::ep && (name.empty() || s.name == name)) targets.push_back(&s);
    if (targets.empty())
      throw ConfigError("--plan", name.empty() ? "the config has no ep strategy to use plan '" + path + "'"
                                               : "no ep strategy named '" + name + "' in the config");
    const nlohmann::json plan_json = parse_json_text(read_text_everywhere(mpi, path, "--plan", "plan file"), "--plan", path);
    const Placement p = placement_from_json(plan_json, path);
    // A plan places whole experts on a strategy's units: its ranks, or its expert-TP groups.
    const int plan_etp = plan_json.value("expert_tp", 1);
    for (const StrategyConfig* s : targets) {
      if (s->expert_tp != plan_etp)
        throw ConfigError("--plan", "plan '" + path + "' is for expert_tp = " + std::to_string(plan_etp) + ", strategy '" +
                                        s->name + "' has expert_tp = " + std::to_string(s->expert_tp) +
                                        " (make it with `place --strategy " + s->name + "`)");
      check_plan_shape(p, config.model.layers, config.model.experts, s->ep, path,
                       s->expert_tp > 1 ? "expert-TP groups of " + std::to_string(s->expert_tp) + " ranks" : "ranks");
    }
    // The routing the plan was made for: a distribution, or "results FILE[#strategy]" (place --load-profile).
    const std::string made_for = plan_json.value("load_profile", "");
    std::optional<std::pair<LoadProfile, std::string>> made_for_load;
    const Topology topo = Topology::from_config(config.cluster);
    if (is_routing_distribution(made_for)) {
      made_for_load.emplace(distribution_load_profile(config, made_for, topo, path + ": load_profile"),
                            made_for + " (the plan's load_profile)");
    } else if (made_for.rfind("results ", 0) == 0) {
      // A results file that moved only costs the prediction its input: say so, use the config's routing.
      const std::string spec = made_for.substr(8);
      const size_t hash = spec.rfind('#');
      const std::string file = spec.substr(0, hash);
      try {
        const nlohmann::json results = parse_json_text(
            read_text_everywhere(mpi, file, "--plan", "results file of the plan's load_profile"), "--plan", file);
        made_for_load.emplace(profile_from_results(results, config.model.layers, config.model.experts, topo, file,
                                                   hash == std::string::npos ? "" : spec.substr(hash + 1)),
                              made_for + " (the plan's load_profile)");
      } catch (const ConfigError& e) {
        if (mpi.rank() == 0)
          std::cout << "moe-bench: note: plan '" << path << "' was made for '" << made_for << "', which cannot be used ("
                    << e.what() << "); its traffic prediction uses the config's routing\n";
      }
    }
    for (const StrategyConfig* s : targets) {
      if (!plans.emplace(s->name, p).second)
        throw ConfigError("--plan", "strategy '" + s->name + "' is given more than one plan");
      paths[s->name] = path;
      if (made_for_load) plan_load[s->name] = *made_for_load;
      if (mpi.rank() == 0)
        std::cout << "moe-bench: strategy '" << s->name << "' runs with the " << p.algorithm << " placement of plan '" << path
                  << "'" << (p.algorithm != s->placement ? " (the config says " + s->placement + ")" : std::string()) << "\n";
    }
  }
  return plans;
}

}  // namespace moe
