// Results JSON (schema_version 1): tool, context, config, strategies, comparison; and the console table.
#pragma once
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"

namespace moe {

struct RunContext {
  std::string mode = "measured";          // measured | simulated
  std::string backend;                    // cpu | cuda
  std::string compute_dtype;              // fp32 on cpu
  int world_size = 1;
  std::vector<std::string> hosts;         // per rank
  std::vector<std::string> devices;       // per rank or one entry
  std::string mpi;
  std::string runtime_json;               // cuda: {"cuda_driver", "cuda_runtime", "cublas", "nccl", "devices"}
  std::vector<std::string> argv;
  std::string notice;                     // e.g. backend fallback
  std::vector<std::pair<std::string, std::string>> environment;   // relevant_environment()
  std::string status = "ok";              // ok | failed (--keep-partial)
  std::string failure_reason;             // failed: what ended the run, where
};

std::string tool_version();
const char* git_sha();                    // the commit built (generated at build time; "-dirty" if modified)
// Environment variables that change a run's behaviour or placement, sorted by name: OMPI_*,
// NCCL_*, UCX_*, MOE_*, CUDA_VISIBLE_DEVICES, OPENBLAS_NUM_THREADS.
std::vector<std::pair<std::string, std::string>> relevant_environment();
std::string utc_timestamp();

nlohmann::ordered_json make_results(const RunContext& ctx, const Config& config, const nlohmann::ordered_json& strategies,
                                    const nlohmann::ordered_json& comparison);

// The comparison section: every strategy after the first against the first (the baseline):
// [{name, vs, tps_ratio, tpot_ratio, prefill_tps_ratio}].
nlohmann::ordered_json compare_strategies(const nlohmann::ordered_json& strategies);

// Results of a run that failed or was interrupted (--keep-partial): "status": "failed", the
// reason, and the strategies that completed.
nlohmann::ordered_json make_failed_results(const RunContext& ctx, const Config& config,
                                           const nlohmann::ordered_json& completed_strategies,
                                           const nlohmann::ordered_json& comparison);
// "6.2e-07": errors in the console table.
std::string scientific(double v);
// comparison[].tpot_ratio (baseline TPOT / this one) in words: "1.44x lower", 0.97 -> "1.03x higher".
std::string tpot_change_text(double tpot_ratio);

// Readable summary of a results document (TPS, TPOT, phases, traffic, load, verification).
void print_table(std::ostream& out, const nlohmann::ordered_json& results);

}  // namespace moe
