// Tests of the CUDA backend's host-side index math (launch_math.hpp): launch geometry, the
// row-major -> column-major cuBLAS mapping, attention offsets, chunk planning and shape checks.
// The chunked attention is replayed on the CPU with a column-major reference gemm.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cuda/launch_math.hpp"

using namespace moe;
using namespace moe::cuda;

namespace {

// Column-major C = alpha op(A) op(B) + beta C, as cuBLAS defines it.
void colmajor_gemm(const ColumnMajorGemm& g, float alpha, const float* a, const float* b, float beta, float* c) {
  for (int64_t j = 0; j < g.n; ++j)
    for (int64_t i = 0; i < g.m; ++i) {
      double acc = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        const float av = g.trans_a ? a[i * g.lda + p] : a[p * g.lda + i];
        const float bv = g.trans_b ? b[p * g.ldb + j] : b[j * g.ldb + p];
        acc += double(av) * bv;
      }
      c[j * g.ldc + i] = float(alpha * acc + beta * c[j * g.ldc + i]);
    }
}

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Causal attention per (sequence, head) straight from the definition; caches already filled.
std::vector<float> naive_attention(const AttentionGeometry& g, const std::vector<float>& q, const std::vector<float>& kc,
                                   const std::vector<float>& vc) {
  std::vector<float> out(q.size(), 0.0f);
  const double scale = 1.0 / std::sqrt(double(g.head_dim));
  for (int64_t s = 0; s < g.num_seq; ++s)
    for (int64_t h = 0; h < g.heads; ++h)
      for (int64_t i = 0; i < g.new_len; ++i) {
        const int64_t visible = g.past_len + i + 1;
        std::vector<double> w(visible);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < visible; ++j) {
          double d = 0;
          for (int64_t e = 0; e < g.head_dim; ++e)
            d += double(q[(s * g.new_len + i) * g.hd() + h * g.head_dim + e]) * kc[(s * g.max_len + j) * g.hd() + h * g.head_dim + e];
          w[j] = d * scale;
          mx = std::max(mx, w[j]);
        }
        for (auto& x : w) sum += (x = std::exp(x - mx));
        for (int64_t e = 0; e < g.head_dim; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < visible; ++j) acc += w[j] / sum * vc[(s * g.max_len + j) * g.hd() + h * g.head_dim + e];
          out[(s * g.new_len + i) * g.hd() + h * g.head_dim + e] = float(acc);
        }
      }
  return out;
}

// The GPU algorithm of launch_attention, step for step, on the CPU: same plan, same pointer
// offsets, same column-major products, same causal softmax rows.
std::vector<float> chunked_attention(const AttentionGeometry& g, const std::vector<float>& q, const std::vector<float>& kc,
                                     const std::vector<float>& vc, int64_t workspace_bytes, int probs_bytes) {
  std::vector<float> out(q.size(), 0.0f);
  const AttentionChunks c = plan_attention_chunks(g.num_pairs(), g.new_len, g.ctx(), probs_bytes, workspace_bytes);
  REQUIRE(c.rows_per_chunk > 0);
  const float scale = 1.0f / std::sqrt(float(g.head_dim));
  for (int64_t r0 = 0; r0 < g.new_len; r0 += c.rows_per_chunk) {
    const int64_t rows = std::min(c.rows_per_chunk, g.new_len - r0);
    const int64_t ctx = chunk_context(g, r0, rows);
    for (int64_t p0 = 0; p0 < g.num_pairs(); p0 += c.pairs_per_chunk) {
      const int64_t pairs = std::min(c.pairs_per_chunk, g.num_pairs() - p0);
      REQUIRE(attention_workspace_layout(pairs, rows, ctx, probs_bytes).total_bytes <= workspace_bytes);
      std::vector<float> scores(pairs * rows * ctx), probs(pairs * rows * ctx);
      for (int64_t t = 0; t < pairs; ++t) {
        const int64_t seq = pair_seq(g, p0 + t), head = pair_head(g, p0 + t);
        colmajor_gemm(attention_scores_gemm(rows, ctx, g.head_dim, g.hd()), scale, &kc[cache_offset(g, seq, head, 0)],
                      &q[new_row_offset(g, seq, head, r0)], 0.0f, &scores[t * rows * ctx]);
      }
      for (int64_t row = 0; row < pairs * rows; ++row) {
        const int64_t visible = visible_keys(g, r0) + row % rows;
        REQUIRE(visible <= ctx);
        float mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < visible; ++j) mx = std::max(mx, scores[row * ctx + j]);
        for (int64_t j = 0; j < visible; ++j) sum += std::exp(scores[row * ctx + j] - mx);
        for (int64_t j = 0; j < ctx; ++j) probs[row * ctx + j] = j < visible ? std::exp(scores[row * ctx + j] - mx) / sum : 0.0f;
      }
      for (int64_t t = 0; t < pairs; ++t) {
        const int64_t seq = pair_seq(g, p0 + t), head = pair_head(g, p0 + t);
        colmajor_gemm(attention_pv_gemm(rows, ctx, g.head_dim, g.hd()), 1.0f, &vc[cache_offset(g, seq, head, 0)],
                      &probs[t * rows * ctx], 0.0f, &out[new_row_offset(g, seq, head, r0)]);
      }
    }
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

Mat mat(void* p, int64_t r, int64_t c, DType t = DType::f16) { return Mat{p, r, c, t}; }

}  // namespace

TEST_CASE("launch geometry: grid-stride blocks and row block sizes", "[cuda][launch_math]") {
  CHECK(ceil_div(0, 256) == 0);
  CHECK(ceil_div(257, 256) == 2);
  CHECK(align_up(1, 256) == 256);
  CHECK(elementwise_blocks(0) == 0);
  CHECK(elementwise_blocks(1) == 1);
  CHECK(elementwise_blocks(256) == 1);
  CHECK(elementwise_blocks(257) == 2);
  CHECK(elementwise_blocks(int64_t(1) << 40) == kMaxElementwiseBlocks);
  for (int64_t cols : {0, 1, 31, 32, 33, 100, 1000, 1024, 1500, 8192, 32768}) {
    const int t = row_block_threads(cols);
    CHECK(t % kWarpSize == 0);
    CHECK(t >= kWarpSize);
    CHECK(t <= kMaxRowThreads);
    CHECK((t >= cols || t == kMaxRowThreads));
    CHECK(row_block_threads(cols, kMaxCopyRowThreads) <= kMaxCopyRowThreads);
  }
}

TEST_CASE("row-major gemm maps onto column-major cuBLAS as C^T = B^T A^T", "[cuda][launch_math]") {
  std::mt19937 rng(7);
  for (auto [m, n, k] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 5, 7}, {37, 29, 61}, {8, 1, 16}}) {
    const auto a = random_vec(m * k, rng), b = random_vec(k * n, rng);
    std::vector<float> c(m * n, 0.5f), want(m * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0.5;  // beta = 1 keeps the old value
        for (int64_t p = 0; p < k; ++p) acc += double(a[i * k + p]) * b[p * n + j];
        want[i * n + j] = float(acc);
      }
    const ColumnMajorGemm g = row_major_gemm(m, n, k);
    CHECK_FALSE(g.trans_a);
    CHECK_FALSE(g.trans_b);
    colmajor_gemm(g, 1.0f, b.data(), a.data(), 1.0f, c.data());  // first operand is B
    CHECK(max_abs_diff(c, want) < 1e-4);
  }
}

TEST_CASE("attention offsets address sequence-major rows and side-by-side heads", "[cuda][launch_math]") {
  AttentionGeometry g;
  g.num_seq = 3, g.past_len = 4, g.new_len = 2, g.max_len = 9, g.heads = 5, g.head_dim = 8;
  CHECK(g.hd() == 40);
  CHECK(g.ctx() == 6);
  CHECK(g.num_pairs() == 15);
  CHECK(new_row_offset(g, 0, 0, 0) == 0);
  CHECK(new_row_offset(g, 2, 3, 1) == (2 * 2 + 1) * 40 + 3 * 8);
  CHECK(cache_offset(g, 1, 4, 7) == (1 * 9 + 7) * 40 + 4 * 8);
  CHECK(pair_seq(g, 13) == 2);
  CHECK(pair_head(g, 13) == 3);
  CHECK(chunk_context(g, 0, 2) == 6);
  CHECK(chunk_context(g, 1, 1) == 6);
  CHECK(visible_keys(g, 0) == 5);
  CHECK(attention_flops(g) == 15 * 4 * 2 * 6 * 8);
}

TEST_CASE("attention workspace layout is aligned and its regions do not overlap", "[cuda][launch_math]") {
  for (int probs_bytes : {2, 4}) {
    const auto l = attention_workspace_layout(7, 5, 33, probs_bytes);
    CHECK(l.pointers_offset == 0);
    CHECK(l.scores_offset % kWorkspaceAlign == 0);
    CHECK(l.probs_offset % kWorkspaceAlign == 0);
    CHECK(l.scores_offset >= kAttentionPointerArrays * 7 * int64_t(sizeof(void*)));
    CHECK(l.probs_offset >= l.scores_offset + 7 * 5 * 33 * 4);
    CHECK(l.total_bytes >= l.probs_offset + 7 * 5 * 33 * probs_bytes);
  }
}

TEST_CASE("attention chunk plans fit the workspace and cover all work", "[cuda][launch_math]") {
  SECTION("everything in one chunk when it fits") {
    const auto c = plan_attention_chunks(12, 7, 12, 2, int64_t(256) << 20);
    CHECK(c.pairs_per_chunk == 12);
    CHECK(c.rows_per_chunk == 7);
  }
  SECTION("whole pairs batched when one pair fits") {
    const auto c = plan_attention_chunks(64, 1, 1000, 2, 64 * 1024);
    CHECK(c.rows_per_chunk == 1);
    CHECK(c.pairs_per_chunk >= 1);
    CHECK(c.pairs_per_chunk < 64);
    CHECK(attention_workspace_layout(c.pairs_per_chunk, 1, 1000, 2).total_bytes <= 64 * 1024);
    CHECK(attention_workspace_layout(c.pairs_per_chunk + 1, 1, 1000, 2).total_bytes > 64 * 1024);
  }
  SECTION("query rows split when one pair does not fit") {
    const auto c = plan_attention_chunks(4, 10000, 10000, 2, int64_t(256) << 20);
    CHECK(c.pairs_per_chunk == 1);
    CHECK(c.rows_per_chunk > 0);
    CHECK(c.rows_per_chunk < 10000);
    CHECK(attention_workspace_layout(1, c.rows_per_chunk, 10000, 2).total_bytes <= (int64_t(256) << 20));
  }
  SECTION("nothing fits") {
    const auto c = plan_attention_chunks(4, 10, 100000, 4, 4096);
    CHECK(c.rows_per_chunk == 0);
    CHECK(c.pairs_per_chunk == 0);
  }
  SECTION("empty problems plan nothing") { CHECK(plan_attention_chunks(0, 5, 5, 2, 4096).rows_per_chunk == 0); }
  SECTION("batches are capped at cuBLAS's batch limit") {
    // Decode of 1024 sequences x 128 heads: 131,072 (sequence, head) products fit a 1 GiB workspace.
    const auto c = plan_attention_chunks(1024 * 128, 1, 64, 2, int64_t(1) << 30);
    CHECK(c.pairs_per_chunk == kMaxGemmBatch);
    CHECK(c.rows_per_chunk == 1);
  }
}

TEST_CASE("KV append: one 2D copy while the cache stride fits the pitch limit", "[cuda][launch_math]") {
  const int64_t row_bytes = 8192 * 2;  // hidden 8192 in fp16
  CHECK(kv_append_as_one_copy(131071, row_bytes));
  CHECK_FALSE(kv_append_as_one_copy(131072, row_bytes));  // 2^31 bytes per sequence
  CHECK(kv_append_as_one_copy(10032, row_bytes));          // the paper's prompt + decode
}

TEST_CASE("chunked attention replayed on the CPU matches causal attention", "[cuda][launch_math]") {
  std::mt19937 rng(11);
  struct Case {
    int64_t num_seq, heads, head_dim, past_len, new_len, max_len, workspace;
  };
  // Unchunked, row-chunked prefill (tiny workspace), pair-chunked decode, odd sizes.
  for (const Case& k : {Case{2, 3, 4, 0, 5, 8, 1 << 20}, Case{3, 8, 8, 0, 30, 32, 4096}, Case{3, 8, 8, 30, 1, 32, 4096},
                        Case{1, 1, 3, 2, 40, 50, 2048}, Case{5, 2, 6, 3, 4, 7, 1024}}) {
    AttentionGeometry g;
    g.num_seq = k.num_seq, g.heads = k.heads, g.head_dim = k.head_dim;
    g.past_len = k.past_len, g.new_len = k.new_len, g.max_len = k.max_len;
    const auto q = random_vec(g.num_seq * g.new_len * g.hd(), rng);
    const auto kc = random_vec(g.num_seq * g.max_len * g.hd(), rng);
    const auto vc = random_vec(g.num_seq * g.max_len * g.hd(), rng);
    const auto want = naive_attention(g, q, kc, vc);
    for (int probs_bytes : {2, 4}) {
      INFO("case new_len=" << k.new_len << " past_len=" << k.past_len << " workspace=" << k.workspace << " probs=" << probs_bytes);
      if (k.workspace <= 4096) {  // the small workspaces must really exercise chunking
        const auto c = plan_attention_chunks(g.num_pairs(), g.new_len, g.ctx(), probs_bytes, k.workspace);
        CHECK((c.rows_per_chunk < g.new_len || c.pairs_per_chunk < g.num_pairs()));
      }
      CHECK(max_abs_diff(chunked_attention(g, q, kc, vc, k.workspace, probs_bytes), want) < 1e-4);
    }
  }
}

TEST_CASE("shape checks accept valid operands and name the problem otherwise", "[cuda][launch_math]") {
  std::vector<char> buf(1 << 16);
  char* p = buf.data();
  SECTION("mat") {
    CHECK(check_mat(mat(p, 2, 3), DType::f16, "x").empty());
    CHECK(check_mat(mat(nullptr, 0, 3), DType::f16, "x").empty());
    CHECK(check_mat(mat(nullptr, 2, 3), DType::f16, "x").find("null") != std::string::npos);
    CHECK(check_mat(mat(p, 2, 3, DType::f32), DType::bf16, "x").find("dtype fp32") != std::string::npos);
  }
  SECTION("gemm") {
    CHECK(check_gemm(mat(p, 4, 5), mat(p + 100, 5, 6), mat(p + 1000, 4, 6)).empty());
    CHECK(check_gemm(mat(p, 4, 5), mat(p + 100, 6, 6), mat(p + 1000, 4, 6)).find("gemm") != std::string::npos);
    CHECK(check_gemm(mat(p, 4, 5), mat(p + 100, 5, 6), mat(p + 10, 4, 6)).find("overlaps") != std::string::npos);
  }
  SECTION("aliasing") {
    CHECK(check_alias_or_disjoint(mat(p, 4, 4), mat(p, 4, 4), "rms_norm").empty());
    CHECK_FALSE(check_alias_or_disjoint(mat(p, 4, 4), mat(p + 2, 4, 4), "rms_norm").empty());
    CHECK(ranges_overlap(p, 10, p + 9, 10));
    CHECK_FALSE(ranges_overlap(p, 10, p + 10, 10));
    CHECK_FALSE(ranges_overlap(p, 0, p, 10));
  }
  SECTION("gather and combine") {
    int32_t idx[8] = {0};
    float w[8] = {0};
    CHECK(check_gather(mat(p, 4, 8), IndexVec{idx, 3}, mat(p + 1000, 3, 8)).empty());
    CHECK_FALSE(check_gather(mat(p, 4, 8), IndexVec{idx, 2}, mat(p + 1000, 3, 8)).empty());
    CHECK_FALSE(check_gather(mat(p, 4, 8), IndexVec{idx, 3}, mat(p + 1000, 3, 9)).empty());
    CHECK(check_combine(mat(p, 5, 8), IndexVec{idx, 8}, WeightVec{w, 8}, 2, mat(p + 1000, 4, 8)).empty());
    CHECK_FALSE(check_combine(mat(p, 5, 8), IndexVec{idx, 7}, WeightVec{w, 8}, 2, mat(p + 1000, 4, 8)).empty());
    CHECK_FALSE(check_combine(mat(p, 5, 8), IndexVec{idx, 8}, WeightVec{w, 8}, 0, mat(p + 1000, 4, 8)).empty());
  }
  SECTION("attention") {
    AttentionGeometry g;
    g.num_seq = 2, g.past_len = 3, g.new_len = 2, g.max_len = 6, g.heads = 2, g.head_dim = 4;
    const Mat q = mat(p, 4, 8), kn = mat(p + 100, 4, 8), vn = mat(p + 200, 4, 8), out = mat(p + 300, 4, 8);
    const Mat kc = mat(p + 1000, 12, 8), vc = mat(p + 2000, 12, 8);
    CHECK(check_attention(q, kn, vn, kc, vc, g, out).empty());
    g.past_len = 5;
    CHECK(check_attention(q, kn, vn, kc, vc, g, out).find("overflow") != std::string::npos);
    g.past_len = 3;
    CHECK_FALSE(check_attention(q, kn, vn, mat(p + 1000, 11, 8), vc, g, out).empty());
    CHECK_FALSE(check_attention(q, kn, vn, kc, vc, g, mat(p + 1000, 4, 8)).empty());
    g.heads = 3;
    CHECK(check_attention(q, kn, vn, kc, vc, g, out).find("heads*head_dim") != std::string::npos);
  }
}
