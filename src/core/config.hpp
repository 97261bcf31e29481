// Typed configuration (model, workload, cluster, strategies, run) with defaults, parsed from JSON.
// Parsing rejects unknown keys and wrong types; validate_config() checks what holds for any world
// size (runner/run_validation.hpp adds the checks of one run).
// Every error is a ConfigError naming the JSON path (e.g. "strategies[1].ep") and the reason.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/strategy_kind.hpp"

namespace moe {

struct ModelConfig {
  int layers = 0;
  int hidden = 0;       // d
  int ffn_hidden = 0;   // f (per expert)
  int experts = 0;      // E per layer
  int top_k = 2;
  int heads = 0;        // H
  int head_dim = 0;     // D
  bool attention = true;
  bool renormalize = true;
  std::string dtype = "fp16";  // fp32 | fp16 | bf16 (GPU compute dtype; the CPU backend always computes fp32)
  uint64_t seed = 1234;
};

struct WorkloadConfig {
  int batch_sequences = 0;
  int prompt_tokens = 0;
  int decode_steps = 0;
  int warmup_steps = 1;           // untimed decode steps after an untimed prefill
  std::string routing = "gate";   // gate (others come with synthetic routing workloads)
};

struct GpuSpec {
  std::string name = "H100-SXM-80GB";
  double memory_gb = 80;
  double peak_tflops = 989;
  double hbm_gb_s = 3350;
};

struct LinkSpec {
  double bandwidth_gb_s = 0;  // per direction, per GPU (intra) or per NIC (inter)
  double latency_us = 0;
  int nics_per_node = 0;      // inter-node only
};

struct ClusterConfig {
  int nodes = 1;
  int gpus_per_node = 1;
  GpuSpec gpu;
  LinkSpec intra_node{450, 3, 0};
  LinkSpec inter_node{50, 5, 8};
};

struct LoadBalancingConfig {
  std::string policy = "none";     // none | paper
  double threshold = 1.2;
  double step = 0.1;
  int update_interval_tokens = 100;
  double capacity_factor = 0;      // 0 = dropless
};

struct StrategyConfig {
  std::string name;
  std::string kind;                // the config's spelling of a StrategyKind (core/strategy_kind.hpp)
  // Overlap of communication with computation (see schedule/schedule.hpp):
  // tp_pp: none | pipelined; ep: none | chunked | two_batch. Default none.
  std::string overlap = "none";
  // tp_pp
  int tp = 1;
  int pp = 1;
  int microbatches = 1;
  // ep: ep x expert_tp ranks. Expert-TP group g is ranks [g * expert_tp, (g + 1) * expert_tp) on one
  // node; the placement maps experts to groups, and each member holds 1/expert_tp of every expert of
  // its group (W1 columns, W2 rows). Attention is data parallel over all ep x expert_tp ranks.
  int ep = 1;
  int expert_tp = 1;
  int chunks = 1;
  // chunked: chunks of whole sequences go on to the next layer without waiting for the other chunks.
  bool immediate_routing = true;
  std::string placement = "round_robin";
  // Expected routing the placer plans for: a routing distribution (core/routing_distribution.hpp, e.g.
  // "zipf:1.2,local:0.8"); empty = workload.routing when that is a distribution, else uniform.
  std::string placement_profile;
  // both
  LoadBalancingConfig load_balancing;
};

// The kind of `s` (a ConfigError for a spelling strategy_kinds() does not list).
inline StrategyKind kind_of(const StrategyConfig& s) { return strategy_kind_info(s.kind).kind; }
// Ranks a strategy runs on: tp x pp or ep x expert_tp.
inline int strategy_ranks(const StrategyConfig& s) {
  switch (kind_of(s)) {
    case StrategyKind::tp_pp: return s.tp * s.pp;
    case StrategyKind::ep: return s.ep * s.expert_tp;
  }
  return 0;
}

struct RunConfig {
  std::string backend = "auto";    // auto | cpu | cuda
  int iterations = 3;
  bool verify = true;
  // Longest a rank may wait in one blocking communication call before the job is aborted with a
  // message naming the phase and the ranks waited for; 0 disables the watchdog.
  double timeout_s = 300;
  // Backend cpu only: round every stored value to model.dtype (fp16/bf16) while computing in fp32,
  // so that the verification of a 16-bit run can be exercised without a GPU.
  bool emulate_dtype = false;
};
constexpr double kMaxTimeoutS = 7 * 24 * 3600.0;

struct Config {
  std::string name;
  ModelConfig model;
  WorkloadConfig workload;
  ClusterConfig cluster;
  std::vector<StrategyConfig> strategies;
  RunConfig run;
};

// Parse (types, unknown keys, defaults). Throws ConfigError.
Config parse_config(const nlohmann::json& j);
Config parse_config_text(const std::string& text, const std::string& source_name);
Config load_config_file(const std::string& path);

// The config with every default filled in, in the input's key order (for results JSON).
nlohmann::ordered_json config_to_json(const Config& c);

// Checks that hold for any world size and backend (positive sizes, top_k <= experts, ...).
void validate_config(const Config& c);

// The values of strategies[].placement (placement/placement.hpp makes the placer of each name).
inline std::vector<std::string> placer_names() { return {"round_robin", "balanced", "topology_aware"}; }

}  // namespace moe
