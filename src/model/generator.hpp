// Deterministic weights and inputs (docs/model.md "Deterministic generation"): every value is a
// pure function of (seed, layer, kind, expert, global index), so shards generate their own
// rows/columns without moving weights, and strategies, backends and independent implementations
// agree bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.hpp"
#include "core/hash.hpp"

namespace moe {

enum class WeightKind : uint64_t { gate = 1, w1 = 2, w2 = 3, wq = 4, wk = 5, wv = 6, wo = 7, prompt = 8 };

// (layer << 32) | (kind << 16) | expert: the stream of one tensor (core/hash.hpp gives its values).
uint64_t stream_id(int layer, WeightKind kind, int expert);

// Block [row0, row0+rows) x [col0, col0+cols) of the full [full_rows x full_cols] tensor, row-major.
// Values scale * (2u - 1) with scale = 1/sqrt(full_rows) (weights) or 1 (prompt).
std::vector<float> generate_block(uint64_t seed, int layer, WeightKind kind, int expert, int64_t full_rows,
                                  int64_t full_cols, int64_t row0, int64_t rows, int64_t col0, int64_t cols);

// Full-tensor conveniences on the model dims.
std::vector<float> generate_weight(const ModelConfig& m, int layer, WeightKind kind, int expert);
// Prompt rows [token0, token0+num_tokens) of the [batch*prompt x hidden] input, global token order.
std::vector<float> generate_prompt_rows(const ModelConfig& m, int batch_sequences, int prompt_tokens,
                                        int64_t token0, int64_t num_tokens);

// Shape of each weight kind as [rows x cols] of the full tensor.
struct WeightShape {
  int64_t rows;
  int64_t cols;
};
WeightShape weight_shape(const ModelConfig& m, WeightKind kind);

}  // namespace moe
