// Rank layout (node-major) and traffic classification by link.
#include "topology/topology.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moe {

const char* link_class_name(LinkClass c) {
  switch (c) {
    case LinkClass::self: return "self";
    case LinkClass::intra_node: return "intra_node";
    case LinkClass::inter_node: return "inter_node";
  }
  return "?";
}

Topology::Topology(int nodes, int gpus_per_node) : nodes_(nodes), gpus_per_node_(gpus_per_node) {
  MOE_REQUIRE(nodes > 0 && gpus_per_node > 0, "topology needs positive nodes and gpus_per_node");
}

int Topology::node_of(int rank) const {
  MOE_REQUIRE(rank >= 0 && rank < num_ranks(), "rank " + std::to_string(rank) + " outside the topology");
  return rank / gpus_per_node_;
}

int Topology::gpu_of(int rank) const {
  MOE_REQUIRE(rank >= 0 && rank < num_ranks(), "rank " + std::to_string(rank) + " outside the topology");
  return rank % gpus_per_node_;
}

LinkClass Topology::link(int from_rank, int to_rank) const {
  if (from_rank == to_rank) return LinkClass::self;
  return node_of(from_rank) == node_of(to_rank) ? LinkClass::intra_node : LinkClass::inter_node;
}

TrafficSummary summarize_traffic(const Topology& topo, int nics_per_node,
                                 const std::vector<std::vector<int64_t>>& bytes) {
  TrafficSummary s;
  const int n = topo.num_ranks();
  const int nics = std::max(1, nics_per_node);
  std::vector<int64_t>& nic_bytes = s.nic_bytes;
  nic_bytes.assign(static_cast<size_t>(topo.nodes()) * nics, 0);
  s.port_bytes.assign(n, 0);
  for (int src = 0; src < n && src < static_cast<int>(bytes.size()); ++src) {
    int64_t port = 0;
    for (int dst = 0; dst < n && dst < static_cast<int>(bytes[src].size()); ++dst) {
      const int64_t b = bytes[src][dst];
      switch (topo.link(src, dst)) {
        case LinkClass::self: break;
        case LinkClass::intra_node:
          s.intra_node_bytes += b;
          port += b;
          break;
        case LinkClass::inter_node:
          s.inter_node_bytes += b;
          nic_bytes[static_cast<size_t>(topo.node_of(src)) * nics + topo.gpu_of(src) % nics] += b;
          break;
      }
    }
    s.port_bytes[src] = port;
    s.max_intra_link_bytes = std::max(s.max_intra_link_bytes, port);
  }
  for (int64_t b : nic_bytes) s.max_inter_link_bytes = std::max(s.max_inter_link_bytes, b);
  return s;
}

}  // namespace moe
