// Reference forward against a deliberately naive float64 implementation of the model contract
// (triple loops, no BLAS, attention recomputed over the whole prefix each step, own routing and
// balancer), plus rms numerics, determinism and the effect of load balancing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "model/generator.hpp"
#include "model/reference.hpp"

using namespace moe;

namespace {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;  // row-major list of rows

Mat load(const ModelConfig& m, int layer, WeightKind kind, int expert) {
  const WeightShape s = weight_shape(m, kind);
  const std::vector<float> w = generate_weight(m, layer, kind, expert);
  Mat out(s.rows, Vec(s.cols));
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) out[r][c] = w[r * s.cols + c];
  return out;
}

Vec vecmat(const Vec& x, const Mat& w) {
  Vec y(w[0].size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i)
    for (size_t j = 0; j < y.size(); ++j) y[j] += x[i] * w[i][j];
  return y;
}

Vec rms(const Vec& z) {
  double s = 0;
  for (double v : z) s += v * v;
  Vec out(z);
  for (double& v : out) v /= std::sqrt(s / z.size() + 1e-5);
  return out;
}

// The contract, one token and one layer at a time. Layer inputs of every position are kept and
// K/V are recomputed from them each step instead of being cached.
struct Naive {
  ModelConfig m;
  LoadBalancingConfig lb;
  std::vector<Mat> wg, wq, wk, wv, wo;
  std::vector<std::vector<Mat>> w1, w2;
  std::vector<std::vector<std::vector<Vec>>> inputs;  // [layer][seq][pos] layer input x
  std::vector<Vec> mult;                              // [layer][E]
  std::vector<std::vector<int64_t>> window;           // [layer][E]
  std::vector<int64_t> window_tokens;
  ReferenceOutputs out;

  Naive(const ModelConfig& model, const LoadBalancingConfig& balancing, int batch) : m(model), lb(balancing) {
    for (int l = 0; l < m.layers; ++l) {
      wg.push_back(load(m, l, WeightKind::gate, 0));
      if (m.attention) {
        wq.push_back(load(m, l, WeightKind::wq, 0));
        wk.push_back(load(m, l, WeightKind::wk, 0));
        wv.push_back(load(m, l, WeightKind::wv, 0));
        wo.push_back(load(m, l, WeightKind::wo, 0));
      }
      w1.emplace_back();
      w2.emplace_back();
      for (int e = 0; e < m.experts; ++e) {
        w1[l].push_back(load(m, l, WeightKind::w1, e));
        w2[l].push_back(load(m, l, WeightKind::w2, e));
      }
    }
    inputs.assign(m.layers, std::vector<std::vector<Vec>>(batch));
    mult.assign(m.layers, Vec(m.experts, 1.0));
    window.assign(m.layers, std::vector<int64_t>(m.experts, 0));
    window_tokens.assign(m.layers, 0);
  }

  Vec attend(int l, int seq, int pos) {
    const int H = m.heads, D = m.head_dim;
    const Vec q = vecmat(rms(inputs[l][seq][pos]), wq[l]);
    Vec concat(H * D, 0.0);
    for (int h = 0; h < H; ++h) {
      Vec s(pos + 1);
      Mat v(pos + 1);
      for (int j = 0; j <= pos; ++j) {
        const Vec z = rms(inputs[l][seq][j]);
        const Vec kj = vecmat(z, wk[l]);
        v[j] = vecmat(z, wv[l]);
        s[j] = 0;
        for (int c = 0; c < D; ++c) s[j] += q[h * D + c] * kj[h * D + c];
        s[j] /= std::sqrt(static_cast<double>(D));
      }
      const double mx = *std::max_element(s.begin(), s.end());
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int j = 0; j <= pos; ++j)
        for (int c = 0; c < D; ++c) concat[h * D + c] += s[j] / sum * v[j][h * D + c];
    }
    return vecmat(concat, wo[l]);
  }

  // One step: rows x of (seq, pos) tokens in global order; returns final-layer outputs.
  std::vector<Vec> step(std::vector<Vec> x, const std::vector<std::pair<int, int>>& tok) {
    const int n = static_cast<int>(tok.size()), E = m.experts, k = m.top_k;
    std::vector<std::vector<int64_t>> chosen(m.layers), dropped(m.layers);
    for (int l = 0; l < m.layers; ++l) {
      for (int r = 0; r < n; ++r) {
        auto& hist = inputs[l][tok[r].first];
        hist.resize(std::max<size_t>(hist.size(), tok[r].second + 1));
        hist[tok[r].second] = x[r];
      }
      std::vector<Vec> h = x;
      if (m.attention) {
        for (int r = 0; r < n; ++r) {
          const Vec a = attend(l, tok[r].first, tok[r].second);
          for (int c = 0; c < m.hidden; ++c) h[r][c] += a[c];
        }
      }
      const int64_t cap =
          lb.capacity_factor == 0 ? -1 : static_cast<int64_t>(std::ceil(lb.capacity_factor * n * k / E - 1e-9));
      std::vector<int64_t> used(E, 0);
      chosen[l].assign(E, 0);
      dropped[l].assign(E, 0);
      for (int r = 0; r < n; ++r) {
        const Vec z = rms(h[r]);
        Vec p = vecmat(z, wg[l]);
        const double mx = *std::max_element(p.begin(), p.end());
        double sum = 0;
        for (double& v : p) sum += (v = std::exp(v - mx));
        for (double& v : p) v /= sum;
        std::vector<int> pick;
        std::vector<bool> taken(E, false);
        for (int j = 0; j < k; ++j) {
          int best = -1;
          for (int e = 0; e < E; ++e)
            if (!taken[e] && (best < 0 || p[e] * mult[l][e] > p[best] * mult[l][best])) best = e;
          taken[best] = true;
          pick.push_back(best);
          ++chosen[l][best];
        }
        double psum = 0;
        for (int e : pick) psum += p[e];
        Vec moe(m.hidden, 0.0);
        for (int e : pick) {
          if (cap >= 0 && used[e] >= cap) {
            ++dropped[l][e];
            continue;
          }
          ++used[e];
          const double g = m.renormalize ? p[e] / psum : p[e];
          Vec a = vecmat(z, w1[l][e]);
          for (double& v : a) v = v / (1 + std::exp(-v));
          const Vec y = vecmat(a, w2[l][e]);
          for (int c = 0; c < m.hidden; ++c) moe[c] += g * y[c];
        }
        for (int c = 0; c < m.hidden; ++c) h[r][c] += moe[c];
      }
      window_tokens[l] += n;
      for (int e = 0; e < E; ++e) window[l][e] += chosen[l][e];
      x = h;
    }
    for (int l = 0; l < m.layers; ++l) {
      if (lb.policy != "paper" || window_tokens[l] < lb.update_interval_tokens) continue;
      double mean = 0;
      for (int64_t c : window[l]) mean += c;
      mean /= E;
      for (int e = 0; e < E; ++e) {
        if (window[l][e] > lb.threshold * mean) mult[l][e] = std::max(0.1, mult[l][e] * (1 - lb.step));
        else if (window[l][e] < mean / lb.threshold) mult[l][e] = std::min(10.0, mult[l][e] * (1 + lb.step));
      }
      window[l].assign(E, 0);
      window_tokens[l] = 0;
    }
    out.chosen.push_back(chosen);
    out.dropped.push_back(dropped);
    return x;
  }
};

std::vector<float> flatten(const std::vector<Vec>& rows) {
  std::vector<float> f;
  for (const Vec& r : rows) f.insert(f.end(), r.begin(), r.end());
  return f;
}

ReferenceOutputs run_naive(const ModelConfig& m, const WorkloadConfig& w, int steps, const LoadBalancingConfig& lb) {
  Naive nv(m, lb, w.batch_sequences);
  const int B = w.batch_sequences, P = w.prompt_tokens, d = m.hidden;
  const std::vector<float> prompt = generate_prompt_rows(m, B, P, 0, static_cast<int64_t>(B) * P);
  std::vector<Vec> x;
  std::vector<std::pair<int, int>> tok;
  for (int s = 0; s < B; ++s)
    for (int p = 0; p < P; ++p) {
      tok.emplace_back(s, p);
      x.emplace_back(prompt.begin() + (s * P + p) * d, prompt.begin() + (s * P + p + 1) * d);
    }
  std::vector<Vec> y = nv.step(x, tok);
  nv.out.prefill = flatten(y);
  std::vector<Vec> last;
  for (int s = 0; s < B; ++s) last.push_back(y[s * P + P - 1]);
  for (int t = 0; t < steps; ++t) {
    std::vector<std::pair<int, int>> dtok;
    for (int s = 0; s < B; ++s) dtok.emplace_back(s, P + t);
    std::vector<Vec> in;
    for (const Vec& r : last) in.push_back(rms(r));
    last = nv.step(in, dtok);
    nv.out.decode.push_back(flatten(last));
  }
  return nv.out;
}

// max |a - b| / max |b|: relative to the tensor's scale, so entries near zero do not dominate.
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

ModelConfig tiny_model() {
  ModelConfig m;
  m.layers = 2;
  m.hidden = 8;
  m.ffn_hidden = 16;
  m.experts = 4;
  m.top_k = 2;
  m.heads = 2;
  m.head_dim = 4;
  m.attention = true;
  m.dtype = "fp32";
  return m;
}

WorkloadConfig tiny_workload(int batch = 2, int prompt = 3) {
  WorkloadConfig w;
  w.batch_sequences = batch;
  w.prompt_tokens = prompt;
  w.decode_steps = 2;
  return w;
}

void check_matches_naive(const ModelConfig& m, const WorkloadConfig& w, int steps, const LoadBalancingConfig& lb) {
  const ReferenceOutputs ref = run_reference(m, w, steps, lb);
  const ReferenceOutputs nv = run_naive(m, w, steps, lb);
  REQUIRE(ref.prefill.size() == static_cast<size_t>(w.batch_sequences) * w.prompt_tokens * m.hidden);
  CHECK(rel_error(ref.prefill, nv.prefill) <= 1e-5);
  REQUIRE(ref.decode.size() == static_cast<size_t>(steps));
  for (int t = 0; t < steps; ++t) {
    REQUIRE(ref.decode[t].size() == static_cast<size_t>(w.batch_sequences) * m.hidden);
    CHECK(rel_error(ref.decode[t], nv.decode[t]) <= 1e-5);
  }
  REQUIRE(ref.chosen.size() == static_cast<size_t>(steps + 1));
  CHECK(ref.chosen == nv.chosen);
  CHECK(ref.dropped == nv.dropped);
}

int64_t total(const std::vector<std::vector<std::vector<int64_t>>>& counts) {
  int64_t s = 0;
  for (const auto& step : counts)
    for (const auto& layer : step)
      for (int64_t c : layer) s += c;
  return s;
}

}  // namespace

TEST_CASE("rms normalization numerics", "[reference]") {
  const std::vector<float> x = {3.f, 4.f, 0.f, 0.f, 1e-4f, -1e-4f, 1e20f, -1e20f};
  const std::vector<float> y = rms_normalize_rows(x, 4, 2);
  CHECK(y[0] == Approx(3 / std::sqrt(12.5 + 1e-5)).epsilon(1e-6));
  CHECK(y[1] == Approx(4 / std::sqrt(12.5 + 1e-5)).epsilon(1e-6));
  CHECK(y[2] == 0.0f);  // epsilon keeps a zero row finite
  CHECK(y[3] == 0.0f);
  CHECK(y[4] == Approx(1e-4 / std::sqrt(1e-8 + 1e-5)).epsilon(1e-6));  // epsilon dominates tiny rows
  CHECK(y[6] == Approx(1.0).epsilon(1e-6));  // squares would overflow in float
  CHECK(y[7] == Approx(-1.0).epsilon(1e-6));
}

TEST_CASE("reference matches the naive implementation", "[reference]") {
  LoadBalancingConfig none;
  SECTION("with attention") { check_matches_naive(tiny_model(), tiny_workload(), 2, none); }
  SECTION("attention off") {
    ModelConfig m = tiny_model();
    m.attention = false;
    check_matches_naive(m, tiny_workload(), 2, none);
  }
  SECTION("no renormalization, top-1") {
    ModelConfig m = tiny_model();
    m.renormalize = false;
    m.top_k = 1;
    check_matches_naive(m, tiny_workload(), 2, none);
  }
  SECTION("odd shapes: 3 experts, 3 heads, 3 sequences") {
    ModelConfig m = tiny_model();
    m.layers = 3;
    m.hidden = 6;
    m.ffn_hidden = 5;
    m.experts = 3;
    m.heads = 3;
    m.head_dim = 2;
    m.seed = 77;
    check_matches_naive(m, tiny_workload(3, 4), 3, none);
  }
  SECTION("capacity drops") {
    LoadBalancingConfig cap;
    cap.capacity_factor = 1.0;
    const ModelConfig m = tiny_model();
    check_matches_naive(m, tiny_workload(), 2, cap);
    const ReferenceOutputs r = run_reference(m, tiny_workload(), 2, cap);
    CHECK(total(r.dropped) > 0);
  }
  SECTION("paper balancing with frequent updates") {
    ModelConfig m = tiny_model();
    m.top_k = 1;
    check_matches_naive(m, tiny_workload(), 4, [] {
      LoadBalancingConfig lb;
      lb.policy = "paper";
      lb.threshold = 1.05;
      lb.step = 0.5;
      lb.update_interval_tokens = 1;
      return lb;
    }());
  }
}

TEST_CASE("reference is deterministic and shaped per the header", "[reference]") {
  const ModelConfig m = tiny_model();
  const WorkloadConfig w = tiny_workload();
  const ReferenceOutputs a = run_reference(m, w, 2, LoadBalancingConfig{});
  const ReferenceOutputs b = run_reference(m, w, 2, LoadBalancingConfig{});
  CHECK(a.prefill == b.prefill);
  CHECK(a.decode == b.decode);
  CHECK(a.chosen == b.chosen);
  REQUIRE(a.chosen.size() == 3u);
  for (size_t step = 0; step < a.chosen.size(); ++step) {
    REQUIRE(a.chosen[step].size() == static_cast<size_t>(m.layers));
    const int64_t tokens = step == 0 ? w.batch_sequences * w.prompt_tokens : w.batch_sequences;
    for (const auto& layer : a.chosen[step]) {
      int64_t sum = 0;
      for (int64_t c : layer) sum += c;
      CHECK(sum == tokens * m.top_k);
    }
  }
  CHECK(total(a.dropped) == 0);  // dropless by default
  for (float v : a.prefill) REQUIRE(std::isfinite(v));
  ModelConfig other = m;
  other.seed = 99;
  CHECK(run_reference(other, w, 2, LoadBalancingConfig{}).prefill != a.prefill);
}

TEST_CASE("load balancing changes results only when multipliers change the choice", "[reference]") {
  ModelConfig m = tiny_model();
  const WorkloadConfig w = tiny_workload();
  LoadBalancingConfig none;
  LoadBalancingConfig paper;
  paper.policy = "paper";
  paper.update_interval_tokens = 1;

  SECTION("multipliers never move: identical results") {
    paper.threshold = 1e9;  // no count is ever that far from the mean
    const ReferenceOutputs a = run_reference(m, w, 3, none);
    const ReferenceOutputs b = run_reference(m, w, 3, paper);
    CHECK(a.prefill == b.prefill);
    CHECK(a.decode == b.decode);
    CHECK(a.chosen == b.chosen);
  }
  SECTION("multipliers move but k = E keeps the chosen set") {
    m.top_k = m.experts;
    paper.threshold = 1.01;
    paper.step = 0.5;
    const ReferenceOutputs a = run_reference(m, w, 3, none);
    const ReferenceOutputs b = run_reference(m, w, 3, paper);
    CHECK(a.chosen == b.chosen);
    // Only the summation order of the choices can differ.
    CHECK(rel_error(b.prefill, a.prefill) <= 1e-6);
    for (size_t t = 0; t < a.decode.size(); ++t) CHECK(rel_error(b.decode[t], a.decode[t]) <= 1e-6);
  }
  SECTION("multipliers change the choice: different counts") {
    m.top_k = 1;
    paper.threshold = 1.05;
    paper.step = 0.5;
    const ReferenceOutputs a = run_reference(m, w, 4, none);
    const ReferenceOutputs b = run_reference(m, w, 4, paper);
    CHECK(a.chosen[0] == b.chosen[0]);  // prefill routes before any update
    CHECK(a.prefill == b.prefill);
    CHECK(a.chosen != b.chosen);
    CHECK(a.decode != b.decode);
  }
}
