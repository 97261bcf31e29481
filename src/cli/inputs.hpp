// The input files of `run` and `validate` (the config, a routing trace, plan files). Rank 0 reads
// each file and broadcasts its text, so every rank parses the same input and raises the same error.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/mpi_session.hpp"
#include "placement/placement.hpp"
#include "routing/routing_source.hpp"

namespace moe {

// The text of `path` on every rank; `where` names the option or JSON path in the error, `what` the file.
std::string read_text_everywhere(const MpiSession& mpi, const std::string& path, const std::string& where,
                                 const std::string& what);

Config load_config_everywhere(const MpiSession& mpi, const std::string& path);

// JSON from `text` (the file `path`); a parse error is a ConfigError at `where`.
nlohmann::json parse_json_text(const std::string& text, const std::string& where, const std::string& path);

// workload.routing as a routing source; a trace is read from its results file.
std::shared_ptr<const RoutingSource> load_routing_source(const MpiSession& mpi, const Config& config);

// --plan [NAME=]FILE: the placement of ep strategy NAME (every ep strategy without NAME=). `paths`
// gets each strategy's plan file and `plan_load` the routing the plan was made for (its load_profile);
// rank 0 says when a plan replaces the configured algorithm.
std::map<std::string, Placement> load_plans(const MpiSession& mpi, const Config& config, const std::vector<std::string>& specs,
                                            std::map<std::string, std::string>& paths,
                                            std::map<std::string, std::pair<LoadProfile, std::string>>& plan_load);

}  // namespace moe
