// Tests for src/cost/memory.*: per-rank estimates checked against values computed by hand on a
// tiny config, the special cases (E > ep, E < ep, no attention), and the GB formatting.
#include <catch2/catch.hpp>

#include <string>

#include "core/config.hpp"
#include "cost/memory.hpp"

namespace {

// L=2, d=4, f=8, E=4, k=2, H=2, D=2 (HD=4); batch 4, prompt 3, decode 2 (S=5, T=12); 1 node x 4 gpus.
moe::Config tiny() {
  return moe::parse_config(nlohmann::json::parse(R"({
    "name": "tiny",
    "model": {"layers": 2, "hidden": 4, "ffn_hidden": 8, "experts": 4, "heads": 2, "head_dim": 2},
    "workload": {"batch_sequences": 4, "prompt_tokens": 3, "decode_steps": 2},
    "cluster": {"nodes": 1, "gpus_per_node": 4},
    "strategies": [
      {"name": "baseline", "kind": "tp_pp", "tp": 2, "pp": 2, "microbatches": 2},
      {"name": "proposed", "kind": "ep", "ep": 4}
    ]
  })"));
}

}  // namespace

TEST_CASE("memory: tp_pp on the tiny config, by hand", "[memory]") {
  const moe::Config c = tiny();
  // tp=2, pp=2, microbatches=2: L/pp = 1 layer, HD/tp = 2, f/tp = 4, Tm = 12/2 = 6.
  // weights     = 1 * (4*4*4/2 + 4*4 + 4*2*4*8/2) = 32 + 16 + 128 = 176 elements
  // kv          = 1 * 4 * 5 * 2*4/2               = 80
  // activations = 6*(6*4 + 3*2 + 4) + 6*2*(4 + 4) + 3^2 = 204 + 96 + 9 = 309
  // comm        = 2 * 6 * 4                       = 48
  const moe::MemoryEstimate m = moe::estimate_memory(c, c.strategies[0], 4, 2);
  CHECK(m.weights_bytes == 176 * 2);
  CHECK(m.kv_cache_bytes == 80 * 2);
  CHECK(m.activations_bytes == 309 * 2);
  CHECK(m.comm_buffers_bytes == 48 * 2);
  CHECK(m.total_bytes() == 1226);
  const moe::MemoryEstimate m4 = moe::estimate_memory(c, c.strategies[0], 4, 4);
  CHECK(m4.total_bytes() == 2452);
}

TEST_CASE("memory: ep on the tiny config, by hand", "[memory]") {
  moe::Config c = tiny();
  moe::StrategyConfig s = c.strategies[1];
  SECTION("E == ep: one expert per rank") {
    // hosted = 1, batch/ep = 1 sequence, Tl = 3, Tr = 6.
    // weights     = 2 * (4*4*4 + 4*4 + 1*2*4*8) = 2 * (64 + 16 + 64) = 288
    // kv          = 2 * 1 * 5 * 2*4              = 80
    // activations = 3*(24 + 12 + 4) + 6*(8 + 8) + 9 = 120 + 96 + 9 = 225
    // comm        = 2 * 3 * 2 * 4                = 48
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 4, 2);
    CHECK(m.weights_bytes == 288 * 2);
    CHECK(m.kv_cache_bytes == 80 * 2);
    CHECK(m.activations_bytes == 225 * 2);
    CHECK(m.comm_buffers_bytes == 48 * 2);
  }
  SECTION("E > ep: ceil(E/ep) experts, the largest rank's sequences") {
    s.ep = 3;
    // hosted = ceil(4/3) = 2, ceil(4/3) = 2 sequences, Tl = 6, Tr = 12.
    // weights = 2*(64 + 16 + 2*64) = 416; kv = 2*2*5*8 = 160;
    // activations = 6*40 + 12*16 + 9 = 441; comm = 2*6*2*4 = 96
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 3, 1);
    CHECK(m.weights_bytes == 416);
    CHECK(m.kv_cache_bytes == 160);
    CHECK(m.activations_bytes == 441);
    CHECK(m.comm_buffers_bytes == 96);
  }
  SECTION("ep 2 x expert_tp 2: a half-width shard of the group's experts per rank") {
    s.ep = 2;
    s.expert_tp = 2;
    // hosted = ceil(4/2) = 2 experts per group, f_s = 8/2 = 4, batch/(ep*expert_tp) = 1 sequence,
    // Tl = 3, Tr = 3*2*2 = 12 received rows (every assignment reaches both members).
    // weights = 2*(64 + 16 + 2*2*4*4) = 288; kv = 2*1*5*8 = 80;
    // activations = 3*40 + 12*(8 + 4) + 9 = 273; comm = 2*3*2*2*4 = 96
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 4, 1);
    CHECK(m.weights_bytes == 288);
    CHECK(m.kv_cache_bytes == 80);
    CHECK(m.activations_bytes == 273);
    CHECK(m.comm_buffers_bytes == 96);
  }
  SECTION("E < ep: one (replicated) expert per rank") {
    s.ep = 8;
    // hosted = 1, ceil(4/8) = 1 sequence: same as E == ep.
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 8, 1);
    CHECK(m.weights_bytes == 288);
    CHECK(m.kv_cache_bytes == 80);
    CHECK(m.activations_bytes == 225);
    CHECK(m.comm_buffers_bytes == 48);
  }
}

TEST_CASE("memory: attention terms vanish without attention", "[memory]") {
  moe::Config c = tiny();
  c.model.attention = false;
  // tp_pp: weights = 1*(0 + 16 + 128) = 144; kv = 0; activations = 6*(24 + 4) + 6*2*8 = 264 (no scores);
  // comm = 48.
  const moe::MemoryEstimate m = moe::estimate_memory(c, c.strategies[0], 4, 1);
  CHECK(m.weights_bytes == 144);
  CHECK(m.kv_cache_bytes == 0);
  CHECK(m.activations_bytes == 264);
  CHECK(m.comm_buffers_bytes == 48);
}

TEST_CASE("memory: single-rank FP32 reference, by hand", "[memory]") {
  const moe::Config c = tiny();
  // weights     = 2 * (64 + 16 + 4*2*4*8) = 2 * 336 = 672 elements
  // kv          = 2 * 4 * 5 * 2*4         = 320
  // activations = 12*(24 + 12 + 4) + 12*2*(4 + 8) + 9 = 480 + 288 + 9 = 777
  // all times 4 bytes; no communication.
  const moe::MemoryEstimate m = moe::estimate_reference_memory(c);
  CHECK(m.weights_bytes == 672 * 4);
  CHECK(m.kv_cache_bytes == 320 * 4);
  CHECK(m.activations_bytes == 777 * 4);
  CHECK(m.comm_buffers_bytes == 0);
  CHECK(m.total_bytes() == 7076);
}

TEST_CASE("memory: describe formats decimal units with one decimal", "[memory]") {
  moe::MemoryEstimate m;
  m.weights_bytes = 1'234'000'000;
  m.kv_cache_bytes = 84'060'000'000;
  m.activations_bytes = 49'000'000;
  m.comm_buffers_bytes = 0;
  CHECK(m.describe() ==
        "weights 1.2 GB + KV cache 84.1 GB + activations 49.0 MB + comm buffers 0.0 GB = 85.3 GB");
  m.weights_bytes = 2'500;
  m.kv_cache_bytes = 0;
  m.activations_bytes = 0;
  CHECK(m.describe() == "weights 2.5 KB + KV cache 0.0 GB + activations 0.0 GB + comm buffers 0.0 GB = 2.5 KB");
}

TEST_CASE("memory: the paper's workload needs far more than 80 GB per rank", "[memory]") {
  const moe::Config c = moe::load_config_file(std::string(MOE_SOURCE_DIR) + "/configs/paper-16xh100.json");
  for (const auto& s : c.strategies) {
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 16, 2);
    INFO(s.name << ": " << m.describe());
    CHECK(m.total_bytes() > 80e9);
  }
  // tp_pp KV cache: 2 layers * 1024 seqs * 10032 positions * 2*8192/8 * 2 bytes.
  const moe::MemoryEstimate tp = moe::estimate_memory(c, c.strategies[0], 16, 2);
  CHECK(tp.kv_cache_bytes == int64_t{2} * 1024 * 10032 * 2 * 1024 * 2);
}
