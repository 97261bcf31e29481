// Rank <-> (node, gpu) mapping from the config's nodes x gpus_per_node, link classes, and the
// process groups each strategy uses. Ranks are laid out node-major: rank = node * gpus_per_node + gpu.
#pragma once
#include <string>
#include <vector>

#include "core/config.hpp"

namespace moe {

enum class LinkClass { self = 0, intra_node = 1, inter_node = 2 };
const char* link_class_name(LinkClass c);

class Topology {
 public:
  Topology(int nodes, int gpus_per_node);
  static Topology from_config(const ClusterConfig& c) { return Topology(c.nodes, c.gpus_per_node); }

  int num_ranks() const { return nodes_ * gpus_per_node_; }
  int nodes() const { return nodes_; }
  int gpus_per_node() const { return gpus_per_node_; }
  int node_of(int rank) const;
  int gpu_of(int rank) const;
  LinkClass link(int from_rank, int to_rank) const;

 private:
  int nodes_;
  int gpus_per_node_;
};

// Traffic summary for one rank's or all ranks' sent bytes. Links: each GPU has one NVLink port
// (intra-node, per direction) and uses NIC number (gpu % nics_per_node) of its node for inter-node
// traffic (rail-aligned); a link's load is the bytes sent out through it.
struct TrafficSummary {
  int64_t intra_node_bytes = 0;
  int64_t inter_node_bytes = 0;
  int64_t max_intra_link_bytes = 0;   // busiest GPU NVLink port (sent)
  int64_t max_inter_link_bytes = 0;   // busiest NIC (sent)
  std::vector<int64_t> port_bytes;    // [ranks] intra-node bytes sent through each GPU's NVLink port
  std::vector<int64_t> nic_bytes;     // [nodes * nics_per_node] inter-node bytes sent through each NIC
};
// bytes[src][dst] over world ranks.
TrafficSummary summarize_traffic(const Topology& topo, int nics_per_node,
                                 const std::vector<std::vector<int64_t>>& bytes);

}  // namespace moe
