// Deterministic generator: splitmix64 and u/value entries against constants evaluated independently
// from the contract's formulas (Python integers mod 2^64), shard/full agreement, value ranges.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "model/generator.hpp"

using namespace moe;

namespace {
ModelConfig tiny_model() {
  ModelConfig m;
  m.layers = 2;
  m.hidden = 8;
  m.ffn_hidden = 16;
  m.experts = 4;
  m.top_k = 2;
  m.heads = 2;
  m.head_dim = 4;
  m.seed = 1234;
  return m;
}
}  // namespace

TEST_CASE("splitmix64 matches the contract formula", "[generator]") {
  // Evaluated with Python big integers masked to 64 bits.
  CHECK(splitmix64(0) == 0xE220A8397B1DCDAFULL);
  CHECK(splitmix64(1) == 0x910A2DEC89025CC1ULL);
}

TEST_CASE("stream ids and keys", "[generator]") {
  CHECK(stream_id(1, WeightKind::w1, 3) == 0x100020003ULL);
  CHECK(stream_id(0, WeightKind::prompt, 0) == 0x80000ULL);
  CHECK(stream_key(1234, 0x100020003ULL) == 0xF7D692D017288FD3ULL);
  CHECK(stream_key(7, 0x80000ULL) == 0xC76AA87915F68582ULL);
}

TEST_CASE("uniform and value entries match independently computed constants", "[generator]") {
  const uint64_t key = stream_key(1234, stream_id(1, WeightKind::w1, 3));
  // u has 24 bits, so these decimal constants are exact to double precision.
  CHECK(uniform_at(key, 0) == Approx(0.6746030151844025).epsilon(1e-15));
  CHECK(uniform_at(key, 5) == Approx(0.1246441900730133).epsilon(1e-15));
  CHECK(uniform_at(key, 37) == Approx(0.4576137959957123).epsilon(1e-15));

  // W1 of layer 1, expert 3 is [d=8 x f=16]; index 37 = row 2, col 5; scale 1/sqrt(8).
  const ModelConfig m = tiny_model();
  const std::vector<float> w1 = generate_weight(m, 1, WeightKind::w1, 3);
  REQUIRE(w1.size() == 8u * 16u);
  CHECK(w1[0] == static_cast<float>(0.1234629760525087));
  CHECK(w1[5] == static_cast<float>(-0.2654166385571411));
  CHECK(w1[37] == static_cast<float>(-0.02997157228018824));

  // Prompt: scale 1, seed 7, stream (layer 0, kind 8, expert 0).
  ModelConfig m7 = m;
  m7.seed = 7;
  const std::vector<float> prompt = generate_prompt_rows(m7, 2, 3, 0, 6);
  REQUIRE(prompt.size() == 6u * 8u);
  CHECK(prompt[0] == static_cast<float>(0.8430671095848083));
  CHECK(prompt[3] == static_cast<float>(-0.4022325873374939));
}

TEST_CASE("uniform values lie strictly inside (0, 1)", "[generator]") {
  // Extreme raw outputs map to 0.5/2^24 and 1 - 0.5/2^24; spot-check a range of indices.
  const uint64_t key = stream_key(99, stream_id(3, WeightKind::gate, 0));
  for (uint64_t i = 0; i < 10000; ++i) {
    const double u = uniform_at(key, i);
    REQUIRE(u > 0.0);
    REQUIRE(u < 1.0);
  }
}

TEST_CASE("weight shapes follow the contract", "[generator]") {
  const ModelConfig m = tiny_model();
  CHECK(weight_shape(m, WeightKind::gate).rows == 8);
  CHECK(weight_shape(m, WeightKind::gate).cols == 4);
  CHECK(weight_shape(m, WeightKind::w1).rows == 8);
  CHECK(weight_shape(m, WeightKind::w1).cols == 16);
  CHECK(weight_shape(m, WeightKind::w2).rows == 16);
  CHECK(weight_shape(m, WeightKind::w2).cols == 8);
  for (WeightKind k : {WeightKind::wq, WeightKind::wk, WeightKind::wv}) {
    CHECK(weight_shape(m, k).rows == 8);
    CHECK(weight_shape(m, k).cols == 8);
  }
  CHECK(weight_shape(m, WeightKind::wo).rows == 8);
  CHECK(weight_shape(m, WeightKind::wo).cols == 8);
}

TEST_CASE("a shard equals the corresponding block of the full tensor", "[generator]") {
  ModelConfig m = tiny_model();
  m.hidden = 6;
  m.ffn_hidden = 10;
  for (WeightKind kind : {WeightKind::w1, WeightKind::w2, WeightKind::gate}) {
    const WeightShape s = weight_shape(m, kind);
    const std::vector<float> full = generate_weight(m, 1, kind, 2);
    // Odd block: rows [1, 4), cols [2, cols-1).
    const int64_t r0 = 1, nr = 3, c0 = 2, nc = s.cols - 3;
    const std::vector<float> block = generate_block(m.seed, 1, kind, 2, s.rows, s.cols, r0, nr, c0, nc);
    REQUIRE(block.size() == static_cast<size_t>(nr * nc));
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < nc; ++c) REQUIRE(block[r * nc + c] == full[(r0 + r) * s.cols + c0 + c]);
  }
  // Prompt rows [2, 5) of the [batch*prompt x d] input.
  const std::vector<float> all = generate_prompt_rows(m, 2, 3, 0, 6);
  const std::vector<float> part = generate_prompt_rows(m, 2, 3, 2, 3);
  for (size_t i = 0; i < part.size(); ++i) REQUIRE(part[i] == all[2 * m.hidden + i]);
}

TEST_CASE("values stay within +-scale and differ between streams", "[generator]") {
  const ModelConfig m = tiny_model();
  const std::vector<float> w2 = generate_weight(m, 0, WeightKind::w2, 1);  // rows f = 16
  const double scale = 1.0 / std::sqrt(16.0);
  double lo = 1, hi = -1;
  for (float v : w2) {
    REQUIRE(std::fabs(v) < scale);
    lo = std::min(lo, static_cast<double>(v));
    hi = std::max(hi, static_cast<double>(v));
  }
  CHECK(lo < 0);
  CHECK(hi > 0);
  const std::vector<float> prompt = generate_prompt_rows(m, 2, 3, 0, 6);
  for (float v : prompt) REQUIRE(std::fabs(v) < 1.0f);

  // Different expert, layer, kind or seed give different tensors.
  CHECK(generate_weight(m, 0, WeightKind::w2, 1) != generate_weight(m, 0, WeightKind::w2, 2));
  CHECK(generate_weight(m, 0, WeightKind::w2, 1) != generate_weight(m, 1, WeightKind::w2, 1));
  CHECK(generate_weight(m, 0, WeightKind::wq, 0) != generate_weight(m, 0, WeightKind::wk, 0));
  ModelConfig other = m;
  other.seed = 1235;
  CHECK(generate_weight(m, 0, WeightKind::gate, 0) != generate_weight(other, 0, WeightKind::gate, 0));
  // Same inputs, same values: called twice (determinism), and through the block path the ranks use.
  CHECK(generate_weight(m, 1, WeightKind::wo, 0) == generate_weight(m, 1, WeightKind::wo, 0));
  const WeightShape wo = weight_shape(m, WeightKind::wo);
  CHECK(generate_weight(m, 1, WeightKind::wo, 0) ==
        generate_block(m.seed, 1, WeightKind::wo, 0, wo.rows, wo.cols, 0, wo.rows, 0, wo.cols));
}
