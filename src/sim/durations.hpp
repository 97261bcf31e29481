// Internal to src/sim: the duration helpers the simulator and the public kernel_ms / comm_ms share,
// and the rates of one simulated step (durations.cpp, simulator.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <utility>

#include "cost/cost_model.hpp"
#include "sim/hardware.hpp"

namespace moe {
namespace sim_detail {

inline bool is_host(KernelKind k) { return k == KernelKind::host_route || k == KernelKind::host_plan; }
inline bool is_transfer(KernelKind k) { return k == KernelKind::upload || k == KernelKind::download; }

inline double ceil_log2(int n) { return n <= 1 ? 0.0 : std::ceil(std::log2(double(n))); }

// GB/s -> bytes per millisecond
inline double per_ms(double gb_s) { return gb_s * 1e6; }

// A communication's duration; `busiest(links)` gives the busiest port and NIC of its link loads.
template <class Busiest>
double comm_time_ms(const CommCost& c, const HardwareProfile& hw, Busiest&& busiest) {
  if (c.kind == CommKind::none || c.group_size <= 1) return 0;
  const LinkProfile& slow = c.crosses_nodes ? hw.inter_node : hw.intra_node;
  const double alpha = slow.latency_us * 1e-3;
  auto busiest_link_ms = [&] {
    if (!c.links) return 0.0;
    const std::pair<double, double> most = busiest(*c.links);
    return std::max(most.first * c.scale / per_ms(hw.intra_node.achievable_gb_s()),
                    most.second * c.scale / per_ms(hw.inter_node.achievable_gb_s()));
  };
  switch (c.kind) {
    case CommKind::all_to_all:
      // One round: the busiest link (sent or received, per NVLink port or NIC) decides.
      return alpha + c.peers * hw.alltoall_per_peer_us * 1e-3 + busiest_link_ms();
    case CommKind::all_reduce: {
      // Latency of a tree (small messages), bandwidth of a ring: 2(n-1)/n of the buffer per link.
      const double n = c.group_size;
      const double bus = hw.allreduce_gb_s > 0 && !c.crosses_nodes ? hw.allreduce_gb_s : slow.achievable_gb_s();
      return alpha + 2 * ceil_log2(c.group_size) * hw.collective_hop_us * 1e-3 + 2 * (n - 1) / n * c.payload_bytes / per_ms(bus);
    }
    case CommKind::p2p:
      return alpha + busiest_link_ms();
    case CommKind::control: {
      const double one = c.peers > 0 ? alpha + c.peers * hw.alltoall_per_peer_us * 1e-3
                                     : alpha + 2 * ceil_log2(c.group_size) * hw.collective_hop_us * 1e-3;
      return c.repeats * one;
    }
    case CommKind::none: break;
  }
  return 0;
}

// The profile and, for one simulated step, the busiest port and NIC of every set of link loads: the
// parts of a layer, the layers with the same routing and the roofline share them, so each is found once.
class StepRates {
 public:
  explicit StepRates(const HardwareProfile& profile) : hw(profile) {}
  const HardwareProfile& hw;
  double comm(const CommCost& c) {
    return comm_time_ms(c, hw, [this](const LinkLoads& l) {
      auto [it, added] = busiest_.try_emplace(&l);
      if (added) it->second = {l.max_port(), l.max_nic()};
      return it->second;
    });
  }

 private:
  std::unordered_map<const LinkLoads*, std::pair<double, double>> busiest_;
};

}  // namespace sim_detail
}  // namespace moe
