// Hardware profile for the time model: peak rates, achievable efficiencies, per-kernel rates (from
// calibration), link bandwidths and latencies. Read from / written to JSON (configs/hardware/*.json).
#pragma once
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "cost/cost_model.hpp"

namespace moe {

// A kernel kind's rate; 0 means "derive from the peaks and efficiencies".
struct KernelRate {
  double tflops = 0;        // device kinds: FLOP rate
  double gb_s = 0;          // device kinds: memory rate; upload/download: host<->device rate
  double ns_per_item = 0;   // host kinds
};

struct LinkProfile {
  double bandwidth_gb_s = 0;   // per direction: per GPU port (intra) or per NIC (inter)
  double efficiency = 1;       // achievable fraction of bandwidth_gb_s
  double latency_us = 0;       // alpha of one message (p2p, one all-to-all round)
  double achievable_gb_s() const { return bandwidth_gb_s * efficiency; }
};

struct HardwareProfile {
  std::string name = "default";
  std::string description;
  nlohmann::ordered_json sources = nlohmann::ordered_json::object();  // where the numbers come from

  std::string gpu_name = "H100-SXM-80GB";
  double memory_gb = 80;
  double peak_tflops = 989;        // dense fp16/bf16
  double hbm_gb_s = 3350;
  double gemm_efficiency = 0.7;
  double attention_efficiency = 0.5;
  double hbm_efficiency = 0.85;
  double kernel_overhead_us = 2.5; // per launch (launch + tail when the GPU is not saturated)
  double host_sync_us = 10;        // device -> host synchronisation before host routing

  LinkProfile intra_node{450, 0.82, 4};
  LinkProfile inter_node{50, 0.9, 6};
  int nics_per_node = 8;
  double collective_hop_us = 1.0;      // per tree step of a small all-reduce
  double alltoall_per_peer_us = 0.5;   // per destination of an all-to-all (grouped send/recv)
  double allreduce_gb_s = 0;           // intra-node all-reduce bus bandwidth; 0: the link's achievable bandwidth

  // Ranks share this many processor cores (the CPU backend with more ranks than cores); 0: every
  // rank has its own device. A step then lasts at least the work of all ranks divided by the cores.
  int shared_cores = 0;

  std::array<KernelRate, kNumKernelKinds> kernels{};  // per-kind rates; zeros derive from the above
  // Measured GEMM times (calibration): {m, k, n, ms per call}. A GEMM whose [k x n] is listed takes the
  // time interpolated in m (log-log; linear in m beyond the largest); others use the rates above.
  std::vector<std::array<double, 4>> gemm_table;
  // ms of one [m x k] * [k x n] from the table, or a negative value when (k, n) is not listed.
  double gemm_table_ms(double m, int64_t k, int64_t n) const;

  // Effective rates used by the time model.
  double tflops(KernelKind k) const;
  double gb_s(KernelKind k) const;
  double ns_per_item(KernelKind k) const;
};

// Built-in H100 SXM / NVLink 4 / NDR defaults (configs/hardware/h100-sxm-ndr.json holds the same
// values with their sources), with the peaks of `cluster` (the config's hardware description).
HardwareProfile default_profile(const ClusterConfig& cluster);

// Parse a profile; keys not given keep the values of `base`. Unknown keys are ConfigErrors.
HardwareProfile parse_profile(const nlohmann::json& j, const HardwareProfile& base, const std::string& source);
HardwareProfile load_profile_file(const std::string& path, const HardwareProfile& base);
nlohmann::ordered_json profile_to_json(const HardwareProfile& p);

// "gpu.gemm_efficiency=0.6" style override (dotted path into the JSON form; the value is JSON).
void apply_profile_override(HardwareProfile& p, const std::string& assignment);

// The profile's peaks and links written into a cluster description (topology unchanged).
void apply_profile_to_cluster(const HardwareProfile& p, ClusterConfig& cluster);

}  // namespace moe
