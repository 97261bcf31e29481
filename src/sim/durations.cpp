// Durations of kernels and communications (see simulator.hpp): every duration is a max over
// resources (roofline) plus fixed latencies; nothing is a fixed percentage of anything.
#include "sim/durations.hpp"

#include <array>
#include <limits>

#include "sim/simulator.hpp"

namespace moe {

using namespace sim_detail;

std::string PhaseRoofline::bound() const {
  const double m = std::max({compute_ms, memory_ms, network_ms});
  if (m <= 0) return overhead_ms > 0 ? "overhead" : "none";
  if (overhead_ms > m) return "overhead";
  if (m == network_ms) return "network";
  return m == compute_ms ? "compute" : "memory";
}

double PhaseRoofline::ratio() const {
  std::array<double, 3> v{compute_ms, memory_ms, network_ms};
  std::sort(v.begin(), v.end());
  if (v[2] <= 0) return 0;
  return v[1] > 0 ? v[2] / v[1] : std::numeric_limits<double>::infinity();
}

double kernel_ms(const Kernel& k, const HardwareProfile& hw) {
  if (is_host(k.kind)) return k.items * hw.ns_per_item(k.kind) * 1e-6;
  if (k.kind == KernelKind::gemm && !hw.gemm_table.empty()) {
    const double per_launch = hw.gemm_table_ms(k.m, k.k, k.n);  // measured, launch cost included
    if (per_launch >= 0) return k.launches * per_launch;
  }
  const double launch = k.launches * hw.kernel_overhead_us * 1e-3;
  if (is_transfer(k.kind)) return launch + k.bytes / per_ms(hw.gb_s(k.kind)) + (k.host_sync ? hw.host_sync_us * 1e-3 : 0);
  const double compute = k.flops > 0 ? k.flops / (hw.tflops(k.kind) * 1e9) : 0;
  const double memory = k.bytes / per_ms(hw.gb_s(k.kind));
  return launch + std::max(compute, memory) + (k.host_sync ? hw.host_sync_us * 1e-3 : 0);
}

double comm_ms(const CommCost& c, const HardwareProfile& hw) {
  return comm_time_ms(c, hw, [](const LinkLoads& l) { return std::make_pair(l.max_port(), l.max_nic()); });
}

}  // namespace moe
