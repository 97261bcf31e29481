// Memoized reference runs keyed by the load-balancing parameters.
#include "runner/reference_cache.hpp"

#include <sstream>

namespace moe {

std::string ReferenceCache::key(const LoadBalancingConfig& lb) {
  std::ostringstream key;
  key.precision(17);
  key << lb.policy << '|' << lb.threshold << '|' << lb.step << '|' << lb.update_interval_tokens << '|' << lb.capacity_factor;
  return key.str();
}

const ReferenceOutputs& ReferenceCache::get(const LoadBalancingConfig& lb) {
  const std::string k = key(lb);
  auto it = cache_.find(k);
  if (it == cache_.end())
    it = cache_.emplace(k, run_reference(config_.model, config_.workload, config_.workload.decode_steps, lb, &routing_)).first;
  return it->second;
}

}  // namespace moe
