// CPU ComputeBackend kernels against direct loops: gemm (with accumulate), rms_norm, silu, gather,
// weighted combine (dropped slots skipped), and attention with a KV cache (incremental decode equals
// attention over the whole sequence at once). Also flop and allocation counters.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_compute.hpp"

using namespace moe;

namespace {

std::vector<float> ramp(int64_t n, float scale, float shift = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = std::sin(0.37f * i + shift) * scale;
  return v;
}

struct Host {
  ComputeBackend& c;
  DeviceMat put(const std::vector<float>& v, int64_t rows, int64_t cols) {
    DeviceMat m = c.alloc_mat(rows, cols);
    c.upload(v.data(), m.view, Stream::compute);
    return m;
  }
  std::vector<float> get(const Mat& m) {
    std::vector<float> v(m.elements());
    c.download(m, v.data(), Stream::compute);
    c.synchronize(Stream::compute);
    return v;
  }
};

}  // namespace

TEST_CASE("cpu backend elementwise and gemm kernels", "[cpu_backend]") {
  auto c = make_cpu_compute();
  Host h{*c};
  const auto a = ramp(3 * 4, 1.0f), b = ramp(4 * 5, 0.5f, 1.0f);
  DeviceMat A = h.put(a, 3, 4), B = h.put(b, 4, 5), C = c->alloc_mat(3, 5);
  c->gemm(A.view, B.view, C.view, false);
  c->gemm(A.view, B.view, C.view, true);  // accumulate: 2 * A*B
  const auto got = h.get(C.view);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k) s += a[i * 4 + k] * b[k * 5 + j];
      CHECK(got[i * 5 + j] == Approx(2 * s).margin(1e-6));
    }
  CHECK(c->flops() == 2 * (2 * 3 * 5 * 4));
  CHECK_THROWS(c->gemm(B.view, B.view, C.view, false));

  DeviceMat X = h.put({3, 4, 0, 0}, 2, 2);
  c->rms_norm(X.view, X.view);
  const auto r = h.get(X.view);
  CHECK(r[0] == Approx(3 / std::sqrt(12.5 + 1e-5)));
  CHECK(r[1] == Approx(4 / std::sqrt(12.5 + 1e-5)));
  CHECK(r[2] == 0);

  DeviceMat S = h.put({-1, 0, 2}, 1, 3);
  c->silu(S.view);
  const auto s = h.get(S.view);
  CHECK(s[0] == Approx(-1 / (1 + std::exp(1.0))));
  CHECK(s[1] == 0);
  CHECK(s[2] == Approx(2 / (1 + std::exp(-2.0))));
}

TEST_CASE("cpu backend gather and weighted combine", "[cpu_backend]") {
  auto c = make_cpu_compute();
  Host h{*c};
  DeviceMat src = h.put({0, 0, 1, 1, 2, 2, 3, 3}, 4, 2);
  DeviceIndex idx = c->alloc_index(3);
  const std::vector<int32_t> order = {3, 0, 3};
  c->upload_index(order.data(), idx.view, Stream::compute);
  DeviceMat dst = c->alloc_mat(3, 2);
  c->gather_rows(src.view, idx.view, dst.view);
  CHECK(h.get(dst.view) == std::vector<float>{3, 3, 0, 0, 3, 3});

  // token 0: 0.5*row1 + 0.25*row2; token 1: row 3 dropped (-1) + 2*row0
  DeviceIndex slot = c->alloc_index(4);
  DeviceWeights w = c->alloc_weights(4);
  const std::vector<int32_t> slots = {1, 2, -1, 0};
  const std::vector<float> weights = {0.5f, 0.25f, 9.0f, 2.0f};
  c->upload_index(slots.data(), slot.view, Stream::compute);
  c->upload_weights(weights.data(), w.view, Stream::compute);
  DeviceMat out = h.put({100, 100, 100, 100}, 2, 2);
  c->weighted_combine(src.view, slot.view, w.view, 2, out.view, false);
  CHECK(h.get(out.view) == std::vector<float>{1, 1, 0, 0});
  c->weighted_combine(src.view, slot.view, w.view, 2, out.view, true);
  CHECK(h.get(out.view) == std::vector<float>{2, 2, 0, 0});
  const std::vector<int32_t> bad = {7, 0, 0, 0};
  c->upload_index(bad.data(), slot.view, Stream::compute);
  CHECK_THROWS(c->weighted_combine(src.view, slot.view, w.view, 2, out.view, false));
}

TEST_CASE("cpu backend attention: incremental decode equals the full causal pass", "[cpu_backend]") {
  auto c = make_cpu_compute();
  Host h{*c};
  const int seqs = 2, len = 5, heads = 2, hd = 3, width = heads * hd;
  const auto q = ramp(seqs * len * width, 1.0f, 0.1f), k = ramp(seqs * len * width, 1.0f, 0.7f),
             v = ramp(seqs * len * width, 1.0f, 1.3f);
  // Full pass over all positions.
  DeviceMat Q = h.put(q, seqs * len, width), K = h.put(k, seqs * len, width), V = h.put(v, seqs * len, width);
  DeviceMat kc = c->alloc_mat(seqs * len, width), vc = c->alloc_mat(seqs * len, width), out = c->alloc_mat(seqs * len, width);
  c->attention(Q.view, K.view, V.view, kc.view, vc.view, seqs, 0, len, len, heads, hd, out.view);
  const auto full = h.get(out.view);
  // Naive check of sequence 1, head 1, position 2.
  {
    const int s = 1, hh = 1, i = 2;
    std::vector<double> p(i + 1);
    double mx = -1e30, sum = 0;
    for (int j = 0; j <= i; ++j) {
      double d = 0;
      for (int x = 0; x < hd; ++x) d += q[(s * len + i) * width + hh * hd + x] * k[(s * len + j) * width + hh * hd + x];
      p[j] = d / std::sqrt(double(hd));
      mx = std::max(mx, p[j]);
    }
    for (auto& e : p) sum += (e = std::exp(e - mx));
    for (int x = 0; x < hd; ++x) {
      double o = 0;
      for (int j = 0; j <= i; ++j) o += p[j] / sum * v[(s * len + j) * width + hh * hd + x];
      CHECK(full[(s * len + i) * width + hh * hd + x] == Approx(o).epsilon(1e-5));
    }
  }
  // Prefill 3 positions, then decode 2 one at a time.
  DeviceMat kc2 = c->alloc_mat(seqs * len, width), vc2 = c->alloc_mat(seqs * len, width);
  auto rows = [&](const std::vector<float>& src, int from, int n) {
    std::vector<float> r;
    for (int s = 0; s < seqs; ++s)
      r.insert(r.end(), src.begin() + (s * len + from) * width, src.begin() + (s * len + from + n) * width);
    return r;
  };
  for (auto [past, n] : {std::pair<int, int>{0, 3}, {3, 1}, {4, 1}}) {
    DeviceMat q2 = h.put(rows(q, past, n), seqs * n, width), k2 = h.put(rows(k, past, n), seqs * n, width),
              v2 = h.put(rows(v, past, n), seqs * n, width), o2 = c->alloc_mat(seqs * n, width);
    c->attention(q2.view, k2.view, v2.view, kc2.view, vc2.view, seqs, past, n, len, heads, hd, o2.view);
    const auto got = h.get(o2.view);
    const auto want = rows(full, past, n);
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).margin(1e-6));
  }
  DeviceMat q1 = c->alloc_mat(seqs, width);
  CHECK_THROWS(c->attention(q1.view, q1.view, q1.view, kc2.view, vc2.view, seqs, len, 1, len, heads, hd, q1.view));
}

TEST_CASE("cpu backend tracks live and peak allocations", "[cpu_backend]") {
  auto c = make_cpu_compute();
  {
    DeviceMat a = c->alloc_mat(10, 10);
    CHECK(c->allocated_bytes() == 400);
    DeviceMat b = c->alloc_mat(5, 10);
    CHECK(c->peak_allocated_bytes() == 600);
  }
  CHECK(c->allocated_bytes() == 0);
  CHECK(c->peak_allocated_bytes() == 600);
  c->reset_peak_allocated();
  CHECK(c->peak_allocated_bytes() == 0);
}
