// The interface every parallel strategy implements. A strategy only runs layers; the runner owns
// warm-up, iterations, timing, verification and reporting.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "core/config.hpp"
#include "placement/placement.hpp"
#include "routing/routing_source.hpp"
#include "schedule/phase.hpp"
#include "topology/topology.hpp"

namespace moe {

struct StrategyContext {
  const Config& config;
  const StrategyConfig& spec;
  ComputeBackend& compute;
  Comm& world;
  Topology topology;
  const RoutingSource& routing;
  const Placement* plan = nullptr;   // ep: a plan file's placement over the strategy's units (ranks or
                                     // expert-TP groups); null = computed from the config
};

// Global routing counts of one step for the layers this rank reports (see Strategy::step_load).
struct StepLoad {
  std::vector<std::vector<int64_t>> chosen;   // [L][E] assignments chosen by top-k
  std::vector<std::vector<int64_t>> dropped;  // [L][E] assignments dropped by capacity
  // Per rank (not reduced; every rank reports its own):
  std::vector<int64_t> processed;             // [L] rows this rank's experts (or expert shards) processed (ep), else empty
  std::vector<std::vector<int64_t>> chosen_here;   // [L][E] chosen by the tokens this rank routes (ep), else empty
  std::vector<std::vector<int64_t>> dropped_here;  // [L][E] of those, dropped by capacity (ep), else empty
  // Only while choices are recorded (set_record_choices): [L][step tokens * k] chosen expert + 1 of
  // the tokens this rank reports, 0 elsewhere, global token order; a sum over the world is exact.
  std::vector<std::vector<int32_t>> choices;
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
  // The placement of whole experts the strategy runs with (ep with expert_tp = 1), else null.
  virtual const Placement* placement() const { return nullptr; }
  // The placement over ranks it runs with (ep: experts, or expert shards with expert_tp > 1), else null.
  virtual const Placement* rank_placement() const { return placement(); }
  // Record every token's choice in step_load().choices (the checked pass; costs host memory).
  void set_record_choices(bool on) { record_choices_ = on; }

 protected:
  // Stores routing `r` (before capacity) of tokens [token0, token0 + r.num_tokens) of a step of
  // `step_tokens` tokens for layer l, when recording.
  void record_choices(int l, int64_t token0, const Routing& r);
  // Start of a step of `step_tokens` tokens over `num_layers` layers: clears the recorded choices.
  void begin_step_choices(int num_layers, int64_t step_tokens, int top_k);
  StepLoad step_load_;
  bool record_choices_ = false;
};

std::unique_ptr<Strategy> make_strategy(const StrategyContext& ctx);

}  // namespace moe
