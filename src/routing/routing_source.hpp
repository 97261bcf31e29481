// Where a layer's top-k choice comes from (workload.routing): the model's gate, a synthetic
// distribution that overrides the gate's choice deterministically (uniform, zipf:s, hot:f with
// local:p and drift:n), or a recorded trace replayed exactly. Shared by the reference and every
// strategy, so all of them route a token identically wherever it is computed.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/routing_distribution.hpp"
#include "routing/router.hpp"

namespace moe {

// Rows of one routing call: sequences [seq0, seq0 + num_seq), each with positions
// [pos0, pos0 + new_len), sequence-major (row r is sequence seq0 + r / new_len).
struct TokenBlock {
  int layer = 0;
  int seq0 = 0;
  int num_seq = 0;
  int pos0 = 0;
  int new_len = 0;
  int64_t rows() const { return int64_t(num_seq) * new_len; }
};

// Chosen experts of every step of one iteration: prefill is step 0, decode step t is step t + 1.
struct RoutingTrace {
  int num_layers = 0;
  int num_experts = 0;
  int top_k = 0;
  std::vector<int64_t> tokens_per_step;                 // [steps]
  std::vector<std::vector<std::vector<int32_t>>> choices;  // [steps][L][tokens * k], global token order
  std::string source;                                    // where it was read from

  // FNV-1a 64 over the shape and every choice: equal digests = identical routing.
  std::string digest() const;
  nlohmann::ordered_json to_json() const;
};

// From a results JSON: strategies[i].routing.trace of the strategy named `strategy_name` (empty: the
// first that has one). Errors name the JSON path and `source`.
RoutingTrace trace_from_results(const nlohmann::json& results, const std::string& strategy_name, const std::string& source);

class RoutingSource {
 public:
  enum class Kind { gate, synthetic, trace };

  // workload.routing "gate" or a distribution; a trace spec needs the trace (trace_from_results).
  static std::shared_ptr<const RoutingSource> from_config(const Config& c);
  static std::shared_ptr<const RoutingSource> from_trace(const Config& c, RoutingTrace trace);

  Kind kind() const { return kind_; }
  const std::string& spec() const { return spec_; }
  // Whether balancing multipliers can change the choice (a replayed trace fixes it).
  bool steerable() const { return kind_ != Kind::trace; }

  // Top-k routing of `block` from the gate's softmax `probs` ([rows x E]). Combine weights are always
  // the gate probabilities of the chosen experts (divided by their sum when model.renormalize):
  // synthetic routing and traces replace the choice, not the model's weights.
  Routing route(const std::vector<float>& probs, const TokenBlock& block, const std::vector<double>& multipliers) const;

  // Synthetic choice scores for `block` ([rows x E], larger = preferred), exposed for tests: the
  // top-k of score * m_e samples k distinct experts without replacement with probabilities
  // proportional to share_e * m_e (Gumbel top-k), share_e from popularity_at and local_shares.
  std::vector<float> synthetic_scores(const TokenBlock& block) const;

 private:
  RoutingSource() = default;
  int step_of(int pos) const { return pos < prompt_tokens_ ? 0 : pos - prompt_tokens_ + 1; }
  int node_of_sequence(int seq) const { return int(int64_t(seq) * num_nodes_ / batch_sequences_); }

  Kind kind_ = Kind::gate;
  std::string spec_ = "gate";
  int num_experts_ = 0, top_k_ = 0, prompt_tokens_ = 0, batch_sequences_ = 1, num_nodes_ = 1;
  bool renormalize_ = true;
  uint64_t seed_ = 0;
  RoutingDistribution dist_;
  RoutingTrace trace_;
};

// "trace:PATH" or "trace:PATH#strategy" -> {PATH, strategy}; false for other specs.
bool parse_trace_spec(const std::string& spec, std::string& path, std::string& strategy);

}  // namespace moe
