// Single-rank FP32 reference forward (prefill + decode with a KV cache), written straight from the
// model contract with host loops and cblas_sgemm. It is the oracle, so it shares only the
// generator and the routing rules with the strategies, never the backend interfaces.
#include "model/reference.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "model/generator.hpp"
#include "routing/router.hpp"

namespace moe {

namespace {

constexpr double kRmsEps = 1e-5;

// C[m x n] = A[m x k] . B[k x n], all row-major.
void matmul(const float* a, const float* b, float* c, int m, int n, int k) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
}

std::vector<float> matmul(const std::vector<float>& a, const std::vector<float>& b, int m, int n, int k) {
  std::vector<float> c(static_cast<size_t>(m) * n, 0.0f);
  matmul(a.data(), b.data(), c.data(), m, n, k);
  return c;
}

struct LayerWeights {
  std::vector<float> wg;                  // [d x E]
  std::vector<float> wq, wk, wv;          // [d x H*D] (empty without attention)
  std::vector<float> wo;                  // [H*D x d]
  std::vector<std::vector<float>> w1;     // [E][d x f]
  std::vector<std::vector<float>> w2;     // [E][f x d]
};

LayerWeights load_layer(const ModelConfig& m, int layer) {
  LayerWeights w;
  w.wg = generate_weight(m, layer, WeightKind::gate, 0);
  if (m.attention) {
    w.wq = generate_weight(m, layer, WeightKind::wq, 0);
    w.wk = generate_weight(m, layer, WeightKind::wk, 0);
    w.wv = generate_weight(m, layer, WeightKind::wv, 0);
    w.wo = generate_weight(m, layer, WeightKind::wo, 0);
  }
  for (int e = 0; e < m.experts; ++e) {
    w.w1.push_back(generate_weight(m, layer, WeightKind::w1, e));
    w.w2.push_back(generate_weight(m, layer, WeightKind::w2, e));
  }
  return w;
}

// K and V of every position of every sequence for one layer.
struct KvCache {
  int capacity = 0;        // positions per sequence: prompt + decode steps
  std::vector<float> k;    // [batch][capacity][H*D]
  std::vector<float> v;    // [batch][capacity][H*D]
};

// The tokens of one step: row r of the activations is position pos[r] of sequence seq[r].
struct StepTokens {
  std::vector<int> seq;
  std::vector<int> pos;
  int size() const { return static_cast<int>(seq.size()); }
};

// Causal attention of rms(x) for the step's rows; K/V of the step are written to the cache first,
// so a row sees every position <= its own, from this step or earlier ones.
std::vector<float> attention(const ModelConfig& m, const LayerWeights& w, KvCache& cache,
                             const StepTokens& tok, const std::vector<float>& z) {
  const int d = m.hidden, num_heads = m.heads, head_dim = m.head_dim, hd = num_heads * head_dim;
  const int n = tok.size();
  const std::vector<float> q = matmul(z, w.wq, n, hd, d);
  const std::vector<float> k = matmul(z, w.wk, n, hd, d);
  const std::vector<float> v = matmul(z, w.wv, n, hd, d);
  for (int r = 0; r < n; ++r) {
    MOE_REQUIRE(tok.pos[r] < cache.capacity, "reference: KV cache full");
    const size_t dst = (static_cast<size_t>(tok.seq[r]) * cache.capacity + tok.pos[r]) * hd;
    std::copy(k.begin() + static_cast<size_t>(r) * hd, k.begin() + static_cast<size_t>(r + 1) * hd,
              cache.k.begin() + dst);
    std::copy(v.begin() + static_cast<size_t>(r) * hd, v.begin() + static_cast<size_t>(r + 1) * hd,
              cache.v.begin() + dst);
  }
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(head_dim));
  std::vector<float> heads(static_cast<size_t>(n) * hd, 0.0f);  // concat of the heads, [n x H*D]
  std::vector<double> score;
  std::vector<double> acc(head_dim);
  for (int r = 0; r < n; ++r) {
    const int len = tok.pos[r] + 1;
    const float* kseq = cache.k.data() + static_cast<size_t>(tok.seq[r]) * cache.capacity * hd;
    const float* vseq = cache.v.data() + static_cast<size_t>(tok.seq[r]) * cache.capacity * hd;
    score.assign(len, 0.0);
    for (int h = 0; h < num_heads; ++h) {
      const float* qr = q.data() + static_cast<size_t>(r) * hd + h * head_dim;
      double max_s = -INFINITY;
      for (int j = 0; j < len; ++j) {
        const float* kj = kseq + static_cast<size_t>(j) * hd + h * head_dim;
        double s = 0;
        for (int c = 0; c < head_dim; ++c) s += static_cast<double>(qr[c]) * kj[c];
        score[j] = s * inv_sqrt_d;
        max_s = std::max(max_s, score[j]);
      }
      double sum = 0;
      for (int j = 0; j < len; ++j) {
        score[j] = std::exp(score[j] - max_s);
        sum += score[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int j = 0; j < len; ++j) {
        const float* vj = vseq + static_cast<size_t>(j) * hd + h * head_dim;
        const double pj = score[j] / sum;
        for (int c = 0; c < head_dim; ++c) acc[c] += pj * vj[c];
      }
      float* out = heads.data() + static_cast<size_t>(r) * hd + h * head_dim;
      for (int c = 0; c < head_dim; ++c) out[c] = static_cast<float>(acc[c]);
    }
  }
  return matmul(heads, w.wo, n, d, hd);
}

// Adds to `div` the tokens whose experts in `used` differ from `own`'s, with their score gaps
// (RoutingDivergence). scores p_e * m_e from probs [n x E] and the multipliers.
void compare_routing(const Routing& used, const Routing& own, const std::vector<float>& probs,
                     const std::vector<double>& multipliers, int num_experts, RoutingDivergence& div) {
  const int k = used.top_k, n = used.num_tokens;
  for (int t = 0; t < n; ++t) {
    ++div.tokens_compared;
    const int32_t* a = used.expert.data() + static_cast<size_t>(t) * k;
    const int32_t* b = own.expert.data() + static_cast<size_t>(t) * k;
    auto in = [k](const int32_t* set, int32_t e) { return std::find(set, set + k, e) != set + k; };
    bool same = true;
    for (int j = 0; j < k; ++j) same = same && in(b, a[j]);
    if (same) continue;
    ++div.tokens_differing;
    const float* p = probs.data() + static_cast<size_t>(t) * num_experts;
    auto score = [&](int32_t e) { return static_cast<double>(p[e]) * multipliers[e]; };
    double top = 0, own_kth = INFINITY, used_lowest = INFINITY;
    for (int e = 0; e < num_experts; ++e) top = std::max(top, score(e));
    for (int j = 0; j < k; ++j) {
      own_kth = std::min(own_kth, score(b[j]));
      used_lowest = std::min(used_lowest, score(a[j]));
    }
    const double gap = std::max(0.0, own_kth - used_lowest);
    div.max_score_gap_abs = std::max(div.max_score_gap_abs, gap);
    div.max_score_gap = std::max(div.max_score_gap, top > 0 ? gap / top : 0.0);
  }
}

// MoE(z) for the step's rows: the whole step is one routing group in global token order. With `own`,
// the routing `source` chose is compared with `own`'s into `div`.
std::vector<float> moe_block(const ModelConfig& m, const LayerWeights& w, const LoadBalancingConfig& lb,
                             const LoadBalancer& balancer, const RoutingSource* source, const RoutingSource* own,
                             const TokenBlock& block, const std::vector<float>& z, int n, Routing& routing,
                             std::vector<int32_t>& choices, RoutingDivergence& div) {
  const int d = m.hidden, f = m.ffn_hidden, num_experts = m.experts, k = m.top_k;
  std::vector<float> probs = matmul(z, w.wg, n, num_experts, d);
  softmax_rows(probs, n, num_experts);
  routing = source ? source->route(probs, block, balancer.multipliers())
                   : route_top_k(probs, n, num_experts, k, balancer.multipliers(), m.renormalize);
  if (own) compare_routing(routing, own->route(probs, block, balancer.multipliers()), probs, balancer.multipliers(),
                           num_experts, div);
  choices = routing.expert;
  const int64_t capacity = expert_capacity(lb.capacity_factor, n, k, num_experts);
  apply_capacity(routing, num_experts, capacity, std::vector<int64_t>(num_experts, 0));

  // out_row[t*k + j]: row of choice (t, j) in its expert's output (kept choices only).
  std::vector<int> out_row(static_cast<size_t>(n) * k, -1);
  std::vector<std::vector<float>> expert_out(num_experts);  // [E][rows_e x d]
  for (int e = 0; e < num_experts; ++e) {
    std::vector<float> ze;
    int rows = 0;
    for (int a = 0; a < n * k; ++a) {
      if (routing.expert[a] != e) continue;
      const int t = a / k;
      ze.insert(ze.end(), z.begin() + static_cast<size_t>(t) * d, z.begin() + static_cast<size_t>(t + 1) * d);
      out_row[a] = rows++;
    }
    if (rows == 0) continue;
    std::vector<float> act = matmul(ze, w.w1[e], rows, f, d);
    for (float& x : act) x = static_cast<float>(x / (1.0 + std::exp(-static_cast<double>(x))));  // silu
    expert_out[e] = matmul(act, w.w2[e], rows, d, f);
  }
  // Sum in choice order j = 0..k-1 per token; dropped choices contribute nothing.
  std::vector<float> out(static_cast<size_t>(n) * d, 0.0f);
  for (int t = 0; t < n; ++t) {
    float* dst = out.data() + static_cast<size_t>(t) * d;
    for (int j = 0; j < k; ++j) {
      const int a = t * k + j;
      const int e = routing.expert[a];
      if (e < 0) continue;
      const float g = routing.weight[a];
      const float* src = expert_out[e].data() + static_cast<size_t>(out_row[a]) * d;
      for (int c = 0; c < d; ++c) dst[c] += g * src[c];
    }
  }
  return out;
}

}  // namespace

// No learned scale. The sum of squares is float64 so large rows cannot overflow.
std::vector<float> rms_normalize_rows(const std::vector<float>& x, int rows, int cols) {
  MOE_REQUIRE(rows >= 0 && cols > 0 && x.size() >= static_cast<size_t>(rows) * cols, "rms: bad shape");
  std::vector<float> out(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    const float* src = x.data() + static_cast<size_t>(r) * cols;
    double sumsq = 0;
    for (int c = 0; c < cols; ++c) sumsq += static_cast<double>(src[c]) * src[c];
    const double inv = 1.0 / std::sqrt(sumsq / cols + kRmsEps);
    for (int c = 0; c < cols; ++c) out[static_cast<size_t>(r) * cols + c] = static_cast<float>(src[c] * inv);
  }
  return out;
}

namespace {

ReferenceOutputs run(const ModelConfig& model, const WorkloadConfig& workload, int decode_steps,
                     const LoadBalancingConfig& lb, const RoutingSource* routing_source, const RoutingSource* own) {
  const int num_layers = model.layers, d = model.hidden, num_experts = model.experts;
  const int batch = workload.batch_sequences, prompt = workload.prompt_tokens;
  MOE_REQUIRE(num_layers > 0 && d > 0 && model.ffn_hidden > 0 && num_experts > 0, "reference: bad model dims");
  MOE_REQUIRE(model.top_k >= 1 && model.top_k <= num_experts, "reference: top_k must be in [1, experts]");
  MOE_REQUIRE(!model.attention || (model.heads > 0 && model.head_dim > 0), "reference: bad attention dims");
  MOE_REQUIRE(batch > 0 && prompt > 0 && decode_steps >= 0, "reference: bad workload sizes");

  std::vector<LayerWeights> weights;
  for (int l = 0; l < num_layers; ++l) weights.push_back(load_layer(model, l));
  const int hd = model.heads * model.head_dim;
  std::vector<KvCache> caches(num_layers);
  for (KvCache& c : caches) {
    c.capacity = prompt + decode_steps;
    if (model.attention) {
      c.k.assign(static_cast<size_t>(batch) * c.capacity * hd, 0.0f);
      c.v.assign(static_cast<size_t>(batch) * c.capacity * hd, 0.0f);
    }
  }
  std::vector<LoadBalancer> balancers(num_layers, LoadBalancer(lb, num_experts));

  ReferenceOutputs out;
  // One step through all layers; multipliers are fixed for the step and updated at its boundary.
  auto run_step = [&](std::vector<float> x, const StepTokens& tok) {
    const int n = tok.size();
    std::vector<std::vector<int64_t>> chosen, dropped;
    std::vector<std::vector<int32_t>> choices(num_layers);
    for (int l = 0; l < num_layers; ++l) {
      std::vector<float> h = x;
      if (model.attention) {
        const std::vector<float> a = attention(model, weights[l], caches[l], tok, rms_normalize_rows(x, n, d));
        for (size_t i = 0; i < h.size(); ++i) h[i] += a[i];
      }
      Routing routing;
      const TokenBlock block{l, 0, batch, tok.pos[0], n / batch};
      const std::vector<float> moe = moe_block(model, weights[l], lb, balancers[l], routing_source, own, block,
                                               rms_normalize_rows(h, n, d), n, routing, choices[l], out.divergence);
      for (size_t i = 0; i < h.size(); ++i) h[i] += moe[i];
      balancers[l].observe(n, routing.chosen_per_expert);
      chosen.push_back(routing.chosen_per_expert);
      dropped.push_back(routing.dropped_per_expert);
      x = std::move(h);
    }
    for (LoadBalancer& b : balancers) b.end_step();
    out.chosen.push_back(std::move(chosen));
    out.dropped.push_back(std::move(dropped));
    out.choices.push_back(std::move(choices));
    return x;
  };

  StepTokens prefill_tokens;
  for (int s = 0; s < batch; ++s) {
    for (int p = 0; p < prompt; ++p) {
      prefill_tokens.seq.push_back(s);
      prefill_tokens.pos.push_back(p);
    }
  }
  out.prefill = run_step(generate_prompt_rows(model, batch, prompt, 0, static_cast<int64_t>(batch) * prompt),
                         prefill_tokens);

  // Last output row of each sequence: feeds the next decode step (after rms).
  std::vector<float> last(static_cast<size_t>(batch) * d);
  for (int s = 0; s < batch; ++s) {
    std::copy(out.prefill.begin() + (static_cast<size_t>(s) * prompt + prompt - 1) * d,
              out.prefill.begin() + (static_cast<size_t>(s) * prompt + prompt) * d,
              last.begin() + static_cast<size_t>(s) * d);
  }
  for (int t = 0; t < decode_steps; ++t) {
    StepTokens tok;
    for (int s = 0; s < batch; ++s) {
      tok.seq.push_back(s);
      tok.pos.push_back(prompt + t);
    }
    last = run_step(rms_normalize_rows(last, batch, d), tok);
    out.decode.push_back(last);
  }
  return out;
}

}  // namespace

ReferenceOutputs run_reference(const ModelConfig& model, const WorkloadConfig& workload, int decode_steps,
                               const LoadBalancingConfig& lb, const RoutingSource* routing) {
  return run(model, workload, decode_steps, lb, routing, nullptr);
}

ReferenceOutputs run_reference_replayed(const ModelConfig& model, const WorkloadConfig& workload, int decode_steps,
                                        const LoadBalancingConfig& lb, const RoutingSource& replay,
                                        const RoutingSource& own) {
  return run(model, workload, decode_steps, lb, &replay, &own);
}

}  // namespace moe
