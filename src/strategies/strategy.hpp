// The interface every parallel strategy implements. A strategy only runs layers; the runner owns
// warm-up, iterations, timing, verification and reporting.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "core/config.hpp"
#include "strategies/phase.hpp"
#include "topology/topology.hpp"

namespace moe {

struct StrategyContext {
  const Config& config;
  const StrategyConfig& spec;
  ComputeBackend& compute;
  Comm& world;
  Topology topology;
};

// Global routing counts of one step for the layers this rank reports (see Strategy::step_load).
struct StepLoad {
  std::vector<std::vector<int64_t>> chosen;   // [L][E] assignments chosen by top-k
  std::vector<std::vector<int64_t>> dropped;  // [L][E] assignments dropped by capacity
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string kind() const = 0;
  virtual nlohmann::ordered_json layout() const = 0;

  // Start of an iteration: empty KV caches, balancing multipliers back to 1.
  virtual void reset() = 0;
  // Prefill over every prompt token, then one decode step per call. Collective over the world.
  virtual void prefill(PhaseTimer& timer) = 0;
  virtual void decode_step(PhaseTimer& timer) = 0;

  // Final-layer output of the last step in global token order ([tokens x hidden]) on world rank 0,
  // empty elsewhere. Collective.
  virtual std::vector<float> gather_output() = 0;

  // Global counts of the last step. Each layer is reported by exactly one rank and is zero
  // elsewhere, so a sum over the world gives every layer once.
  const StepLoad& step_load() const { return step_load_; }

 protected:
  StepLoad step_load_;
};

std::unique_ptr<Strategy> make_strategy(const StrategyContext& ctx);

}  // namespace moe
