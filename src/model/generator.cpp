// Deterministic weights and prompt inputs: every value is a pure function of
// (seed, layer, kind, expert, global index), evaluated exactly as docs/model.md states.
#include "model/generator.hpp"

#include <cmath>

#include "core/error.hpp"

namespace moe {

uint64_t stream_id(int layer, WeightKind kind, int expert) {
  MOE_REQUIRE(layer >= 0, "layer index must be non-negative");
  MOE_REQUIRE(expert >= 0 && expert < (1 << 16), "expert index must fit in 16 bits");
  return (static_cast<uint64_t>(layer) << 32) | (static_cast<uint64_t>(kind) << 16) |
         static_cast<uint64_t>(expert);
}

std::vector<float> generate_block(uint64_t seed, int layer, WeightKind kind, int expert, int64_t full_rows,
                                  int64_t full_cols, int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
  MOE_REQUIRE(full_rows > 0 && full_cols > 0, "tensor dimensions must be positive");
  MOE_REQUIRE(row0 >= 0 && rows >= 0 && row0 + rows <= full_rows, "row block outside the tensor");
  MOE_REQUIRE(col0 >= 0 && cols >= 0 && col0 + cols <= full_cols, "column block outside the tensor");
  const uint64_t key = stream_key(seed, stream_id(layer, kind, expert));
  // Weights are scaled by 1/sqrt(fan-in) so activations keep unit scale through the layers.
  const double scale = kind == WeightKind::prompt ? 1.0 : 1.0 / std::sqrt(static_cast<double>(full_rows));
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t row_base = static_cast<uint64_t>(row0 + r) * static_cast<uint64_t>(full_cols);
    float* dst = out.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const double u = uniform_at(key, row_base + static_cast<uint64_t>(col0 + c));
      dst[c] = static_cast<float>(scale * (2.0 * u - 1.0));
    }
  }
  return out;
}

WeightShape weight_shape(const ModelConfig& m, WeightKind kind) {
  const int64_t d = m.hidden;
  const int64_t hd = static_cast<int64_t>(m.heads) * m.head_dim;
  switch (kind) {
    case WeightKind::gate: return {d, m.experts};
    case WeightKind::w1: return {d, m.ffn_hidden};
    case WeightKind::w2: return {m.ffn_hidden, d};
    case WeightKind::wq:
    case WeightKind::wk:
    case WeightKind::wv: return {d, hd};
    case WeightKind::wo: return {hd, d};
    case WeightKind::prompt: break;
  }
  // The prompt's row count depends on the workload; use generate_prompt_rows for it.
  MOE_REQUIRE(false, "weight_shape: the prompt input has no model-only shape");
  return {0, 0};
}

std::vector<float> generate_weight(const ModelConfig& m, int layer, WeightKind kind, int expert) {
  MOE_REQUIRE(kind != WeightKind::prompt, "generate_weight: use generate_prompt_rows for the prompt");
  MOE_REQUIRE(layer >= 0 && layer < m.layers, "generate_weight: layer out of range");
  const WeightShape s = weight_shape(m, kind);
  return generate_block(m.seed, layer, kind, expert, s.rows, s.cols, 0, s.rows, 0, s.cols);
}

std::vector<float> generate_prompt_rows(const ModelConfig& m, int batch_sequences, int prompt_tokens,
                                        int64_t token0, int64_t num_tokens) {
  const int64_t total = static_cast<int64_t>(batch_sequences) * prompt_tokens;
  return generate_block(m.seed, 0, WeightKind::prompt, 0, total, m.hidden, token0, num_tokens, 0, m.hidden);
}

}  // namespace moe
