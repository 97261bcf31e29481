// Routing distributions: the grammar of workload.routing's synthetic values and of an ep
// strategy's placement_profile, and the expert popularity each one defines. The config checks the
// grammar; synthetic routing, placement profiles and the simulator's assumed routing read the
// popularity.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// A routing distribution. Grammar: BASE[,local:p][,drift:n] with BASE one of
//   uniform      every expert equally likely
//   zipf:s       popularity of the expert at popularity rank i (1-based) proportional to 1/i^s, s >= 0;
//                the expert -> rank permutation is derived from the seed and the layer
//   hot:f        fraction f in [0,1] of assignments go to the hot set (experts 0 .. max(1,E/8)-1),
//                the rest uniformly to the other experts
//   local:p      p in [0,1]: fraction of a source's assignments that go to its node's home experts
//                (e with e % nodes == node % nodes; when E < nodes, expert node % E), split in
//                proportion to BASE; the remaining 1-p follow BASE over all experts
//   drift:n      every n steps (prefill = step 0, decode step t = step t+1) the popularity moves
//                max(1, E/8) experts up: expert e takes the popularity expert e - shift had
// Placement profiles plan for epoch 0 (the prefill, which carries most tokens).
struct RoutingDistribution {
  enum class Kind { uniform, zipf, hot };
  Kind kind = Kind::uniform;
  double param = 0;      // zipf exponent s, or hot fraction f
  double locality = 0;   // local:p (0 = none)
  int drift_steps = 0;   // drift:n (0 = none)
  std::string text;      // the spec as given
};

// True for the strings parse_routing_distribution accepts ("gate" is not a distribution).
bool is_routing_distribution(const std::string& spec);
// Throws ConfigError(path, reason) on malformed specs.
RoutingDistribution parse_routing_distribution(const std::string& spec, const std::string& path);

// Per-layer expert popularity of the base distribution (sums to 1): [E].
std::vector<double> base_popularity(const RoutingDistribution& d, int layer, int num_experts, uint64_t seed);

// Popularity at drift epoch `epoch` (step / drift_steps; 0 without drift): [E], sums to 1.
std::vector<double> popularity_at(const RoutingDistribution& d, int layer, int num_experts, uint64_t seed, int epoch);
int drift_epoch(const RoutingDistribution& d, int step);

// Shares of the experts for sources on `node` under local:p (the popularity itself without locality).
std::vector<double> local_shares(const RoutingDistribution& d, const std::vector<double>& popularity, int node,
                                 int num_nodes);

}  // namespace moe
