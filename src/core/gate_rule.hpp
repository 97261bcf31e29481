// The per-token gate rule of the model contract, written once for the host and the device (MOE_HD):
// softmax of one row of logits, top-k by score_e * m_e (ties -> lower expert index) and the combine
// weights (the chosen probabilities, divided by their sum when renormalizing). Arithmetic in
// double, stored in float, so every implementation that calls it agrees bit for bit. No
// allocation, no library calls besides exp: usable in a CUDA kernel with one thread per token.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.hpp"

namespace moe {

// probs[e] = softmax(logits)[e], e < num_experts. Subtracting the row max keeps exp() finite.
MOE_HD inline void gate_softmax_row(const float* logits, int num_experts, float* probs) {
  double max_logit = logits[0];
  for (int e = 1; e < num_experts; ++e) max_logit = logits[e] > max_logit ? double(logits[e]) : max_logit;
  double sum = 0;
  for (int e = 0; e < num_experts; ++e) sum += exp(double(logits[e]) - max_logit);
  for (int e = 0; e < num_experts; ++e) probs[e] = float(exp(double(logits[e]) - max_logit) / sum);
}

// Whether expert a precedes expert b: higher score, then lower index (a strict total order, so the
// k winners and their order are unique).
MOE_HD inline bool gate_precedes(double score_a, int a, double score_b, int b) {
  return score_a != score_b ? score_a > score_b : a < b;
}

// weights[j] = probs[experts[j]], divided by their sum when `renormalize` (and the sum is > 0).
// Combine weights are the unmultiplied probabilities: multipliers steer the choice only.
MOE_HD inline void gate_weights(const float* probs, const int32_t* experts, int top_k, bool renormalize, float* weights) {
  double sum = 0;
  for (int j = 0; j < top_k; ++j) sum += probs[experts[j]];
  const double norm = (renormalize && sum > 0) ? sum : 1.0;
  for (int j = 0; j < top_k; ++j) weights[j] = float(double(probs[experts[j]]) / norm);
}

// experts[j], j < top_k: the j-th best expert by scores[e] * multipliers[e].
// O(top_k * num_experts) selection: k is small.
MOE_HD inline void gate_top_k(const float* scores, const double* multipliers, int num_experts, int top_k,
                              int32_t* experts) {
  for (int j = 0; j < top_k; ++j) {
    int best = -1;
    double best_score = 0;
    for (int e = 0; e < num_experts; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken = taken || experts[i] == e;
      if (taken) continue;
      const double s = double(scores[e]) * multipliers[e];
      if (best < 0 || gate_precedes(s, e, best_score, best)) best = e, best_score = s;
    }
    experts[j] = best;
  }
}

// The whole rule for one token routed by its own gate: probs (scratch [num_experts]) = softmax of
// the logits, experts = top-k of probs * multipliers, weights from probs.
MOE_HD inline void gate_token(const float* logits, const double* multipliers, int num_experts, int top_k,
                              bool renormalize, float* probs, int32_t* experts, float* weights) {
  gate_softmax_row(logits, num_experts, probs);
  gate_top_k(probs, multipliers, num_experts, top_k, experts);
  gate_weights(probs, experts, top_k, renormalize, weights);
}

}  // namespace moe
