// Reference outputs for the checked pass, computed once per distinct load-balancing setting (the
// policy changes routing and therefore outputs) on world rank 0.
#pragma once
#include <map>
#include <string>

#include "core/config.hpp"
#include "model/reference.hpp"

namespace moe {

class ReferenceCache {
 public:
  ReferenceCache(const Config& c, const RoutingSource& routing) : config_(c), routing_(routing) {}
  const ReferenceOutputs& get(const LoadBalancingConfig& lb);
  // Equal keys = the same reference outputs.
  static std::string key(const LoadBalancingConfig& lb);

 private:
  const Config& config_;
  const RoutingSource& routing_;
  std::map<std::string, ReferenceOutputs> cache_;
};

}  // namespace moe
