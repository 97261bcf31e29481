// Tests for src/cost/memory.*: per-rank estimates checked against values computed by hand on a
// tiny config, the special cases (E > ep, E < ep, no attention), and the GB formatting. (That the
// estimates bound what the runs allocate is tests/mpi/test_memory_estimate.cpp's.)
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
  // tp=2, pp=2, microbatches=2: L/pp = 1 layer, HD/tp = 2, f/tp = 4, Tm = (4/2)*3 = 6, T = 12.
  // weights     = 1 * (4*4*2 + 4*4 + 4*2*4*4)              = 32 + 16 + 128 = 176 elements
  // kv          = 1 * 4 * 5 * 2*2                          = 80
  // activations = scratch 4*6*2 + 6*4 + 6*4 = 96, MoE input 6*4 = 24, gathered and expert rows
  //               2*6*2*4 = 96, next input 4*4 = 16, prompt 12*4 = 48: 280 elements;
  //               vectors 2*6*2 + 3*6*2 + 4 = 64 (4 bytes each)
  // comm        = 12*4 + 6*4                               = 72
  const moe::MemoryEstimate m = moe::estimate_memory(c, c.strategies[0], 4, 2);
  CHECK(m.weights_bytes == 176 * 2);
  CHECK(m.kv_cache_bytes == 80 * 2);
  CHECK(m.activations_bytes == 280 * 2 + 64 * 4);
  CHECK(m.comm_buffers_bytes == 72 * 2);
  CHECK(m.total_bytes() == 352 + 160 + 816 + 144);
  const moe::MemoryEstimate m4 = moe::estimate_memory(c, c.strategies[0], 4, 4);
  CHECK(m4.total_bytes() == 704 + 320 + 1120 + 256 + 288);
}

TEST_CASE("memory: ep on the tiny config, by hand", "[memory]") {
  moe::Config c = tiny();
  moe::StrategyConfig s = c.strategies[1];
  SECTION("E == ep: one expert per rank") {
    // hosted = 1, batch/ep = 1 sequence, Tl = 3; one part of a = 3*2 = 6 assignments, R = ceil(2.25a) = 14.
    // weights     = 2 * (4*4*4 + 4*4 + 1*2*4*8) = 2 * (64 + 16 + 64) = 288
    // kv          = 2 * 1 * 5 * 2*4              = 80
    // activations = scratch 4*3*4 + 3*2*8 + 3*4 = 108, 4*3*4 = 48, next input 4: 160 elements;
    //               vectors 2*3*2 + 3*6 + 1 = 31
    // comm        = (2*6 + 2*14) * 4             = 160
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 4, 2);
    CHECK(m.weights_bytes == 288 * 2);
    CHECK(m.kv_cache_bytes == 80 * 2);
    CHECK(m.activations_bytes == 160 * 2 + 31 * 4);
    CHECK(m.comm_buffers_bytes == 160 * 2);
  }
  SECTION("E > ep: ceil(E/ep) experts") {
    s.ep = 2;
    // hosted = 2, 2 sequences, Tl = 6, a = 12, R = 27.
    // weights = 2*(64 + 16 + 2*64) = 416; kv = 2*2*5*8 = 160;
    // activations = (4*6*4 + 6*2*8 + 6*4) + 4*6*4 + 2*4 = 320, vectors 2*6*2 + 3*12 + 2 = 62;
    // comm = (24 + 54) * 4 = 312
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 2, 1);
    CHECK(m.weights_bytes == 416);
    CHECK(m.kv_cache_bytes == 160);
    CHECK(m.activations_bytes == 320 + 62 * 4);
    CHECK(m.comm_buffers_bytes == 312);
  }
  SECTION("ep 2 x expert_tp 2: a half-width shard of the group's experts per rank") {
    s.ep = 2;
    s.expert_tp = 2;
    // hosted = ceil(4/2) = 2 experts per group, f_s = 8/2 = 4, batch/(ep*expert_tp) = 1 sequence,
    // Tl = 3, one part of a = 3*2*2 = 12 assignments (every one reaches both members), R = 27.
    // weights = 2*(64 + 16 + 2*2*4*4) = 288; kv = 2*1*5*8 = 80;
    // activations = (4*3*4 + 3*2*2*4 + 3*4) + 4*3*4 + 4 = 160 elements and vectors 2*3*2 + 3*12 + 1
    // = 49; comm = (2*12 + 2*27) * 4 = 312
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 4, 1);
    CHECK(m.weights_bytes == 288);
    CHECK(m.kv_cache_bytes == 80);
    CHECK(m.activations_bytes == 160 + 49 * 4);
    CHECK(m.comm_buffers_bytes == 312);
  }
  SECTION("E < ep: one (replicated) expert per rank") {
    c.model.experts = 2;
    // hosted = 1, 1 sequence: weights = 2*(64 + 4*2 + 64) = 272; activations 154 elements
    // (scratch 48 + 48 + 3*2) and 31 vectors; comm 160.
    const moe::MemoryEstimate m = moe::estimate_memory(c, s, 4, 1);
    CHECK(m.weights_bytes == 272);
    CHECK(m.kv_cache_bytes == 80);
    CHECK(m.activations_bytes == 154 + 31 * 4);
    CHECK(m.comm_buffers_bytes == 160);
  }
}

TEST_CASE("memory: attention terms vanish without attention", "[memory]") {
  moe::Config c = tiny();
  c.model.attention = false;
  // tp_pp: weights = 1*(0 + 16 + 128) = 144; kv = 0; activations = (0 + 24 + 24) + 24 + 96 + 16 + 48
  // = 232 elements and 64 vectors; comm = 72.
  const moe::MemoryEstimate m = moe::estimate_memory(c, c.strategies[0], 4, 1);
  CHECK(m.weights_bytes == 144);
  CHECK(m.kv_cache_bytes == 0);
  CHECK(m.activations_bytes == 232 + 64 * 4);
  CHECK(m.comm_buffers_bytes == 72);
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
