// Weight upload, attention block, expert bank and gate (see blocks.hpp).
#include "strategies/blocks.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moe {

DeviceMat load_weight(ComputeBackend& compute, const ModelConfig& m, int layer, WeightKind kind, int expert,
                      int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
  const WeightShape full = weight_shape(m, kind);
  const std::vector<float> host = generate_block(m.seed, layer, kind, expert, full.rows, full.cols, row0, rows, col0, cols);
  DeviceMat w = compute.alloc_mat(rows, cols);
  compute.upload(host.data(), w.view, Stream::compute);
  compute.synchronize(Stream::compute);  // `host` goes out of scope
  return w;
}

std::shared_ptr<ScratchArena> ScratchArena::of(ComputeBackend& compute) {
  static std::map<const ComputeBackend*, std::weak_ptr<ScratchArena>> arenas;
  std::shared_ptr<ScratchArena> a = arenas[&compute].lock();
  if (!a) arenas[&compute] = a = std::make_shared<ScratchArena>(compute);
  return a;
}

void ScratchArena::reserve(const std::string& purpose, int64_t rows, int64_t cols) {
  const int64_t need = std::max<int64_t>(rows * cols, 1);
  DeviceMat& b = buffers_[purpose];
  if (b.view.cols >= need) return;
  compute_.synchronize_all();  // no queued work may still use the old storage
  b = DeviceMat{};             // release first so peak memory does not hold both
  b = compute_.alloc_mat(1, need);
}

Mat ScratchArena::get(const std::string& purpose, int64_t rows, int64_t cols) const {
  const auto it = buffers_.find(purpose);
  MOE_REQUIRE(it != buffers_.end() && rows * cols <= it->second.view.cols,
              "scratch '" + purpose + "': " + std::to_string(rows) + " x " + std::to_string(cols) + " exceeds what was reserved");
  Mat m = it->second.view;
  m.rows = rows;
  m.cols = cols;
  return m;
}

void ScratchArena::reserve_vectors(const std::string& purpose, int64_t size) {
  auto& v = vectors_[purpose];
  if (v.first.view.size >= size) return;
  compute_.synchronize_all();
  v = {};
  v = {compute_.alloc_index(std::max<int64_t>(size, 1)), compute_.alloc_weights(std::max<int64_t>(size, 1))};
}

IndexVec ScratchArena::index(const std::string& purpose, int64_t size) const {
  const auto it = vectors_.find(purpose);
  MOE_REQUIRE(it != vectors_.end() && size <= it->second.first.view.size, "scratch '" + purpose + "': index vector too small");
  return IndexVec{it->second.first.view.data, size};
}

WeightVec ScratchArena::weights(const std::string& purpose, int64_t size) const {
  const auto it = vectors_.find(purpose);
  MOE_REQUIRE(it != vectors_.end() && size <= it->second.second.view.size, "scratch '" + purpose + "': weight vector too small");
  return WeightVec{it->second.second.view.data, size};
}

AttentionBlock::AttentionBlock(ComputeBackend& compute, const ModelConfig& m, int layer, int head0, int num_heads,
                               int num_seq, int max_len, int64_t max_tokens)
    : compute_(compute), num_heads_(num_heads), head_dim_(m.head_dim), max_len_(max_len) {
  const int64_t d = m.hidden;
  const int64_t c0 = int64_t(head0) * m.head_dim;
  const int64_t hd = int64_t(num_heads) * m.head_dim;
  wq_ = load_weight(compute, m, layer, WeightKind::wq, 0, 0, d, c0, hd);
  wk_ = load_weight(compute, m, layer, WeightKind::wk, 0, 0, d, c0, hd);
  wv_ = load_weight(compute, m, layer, WeightKind::wv, 0, 0, d, c0, hd);
  wo_ = load_weight(compute, m, layer, WeightKind::wo, 0, c0, hd, 0, d);
  k_cache_ = compute.alloc_mat(int64_t(num_seq) * max_len, hd);
  v_cache_ = compute.alloc_mat(int64_t(num_seq) * max_len, hd);
  scratch_ = ScratchArena::of(compute);
  for (const char* purpose : {"attention.q", "attention.k", "attention.v", "attention.ctx"})
    scratch_->reserve(purpose, max_tokens, hd);
}

void AttentionBlock::forward(const Mat& z, int seq0, int n_seq, int past_len, int new_len, const Mat& out) {
  const int64_t rows = int64_t(n_seq) * new_len;
  MOE_REQUIRE(z.rows == rows && out.rows == rows, "attention block: rows must be n_seq*new_len");
  const int64_t hd = int64_t(num_heads_) * head_dim_;
  const Mat q = scratch_->get("attention.q", rows, hd), k = scratch_->get("attention.k", rows, hd);
  const Mat v = scratch_->get("attention.v", rows, hd), ctx = scratch_->get("attention.ctx", rows, hd);
  compute_.gemm(z, wq_.view, q, false);
  compute_.gemm(z, wk_.view, k, false);
  compute_.gemm(z, wv_.view, v, false);
  const int64_t cache0 = int64_t(seq0) * max_len_, cache_rows = int64_t(n_seq) * max_len_;
  compute_.attention(q, k, v, k_cache_.slice_rows(cache0, cache_rows), v_cache_.slice_rows(cache0, cache_rows), n_seq,
                     past_len, new_len, max_len_, num_heads_, head_dim_, ctx);
  compute_.gemm(ctx, wo_.view, out, false);
}

ExpertBank::ExpertBank(ComputeBackend& compute, const ModelConfig& m, int layer, const std::vector<int>& experts,
                       int64_t col0, int64_t cols, int64_t max_rows)
    : compute_(compute), experts_(experts), block_rows_(std::max<int64_t>(max_rows, 1)), cols_(cols) {
  for (int e : experts) {
    w1_.push_back(load_weight(compute, m, layer, WeightKind::w1, e, 0, m.hidden, col0, cols));
    w2_.push_back(load_weight(compute, m, layer, WeightKind::w2, e, col0, cols, 0, m.hidden));
  }
  scratch_ = ScratchArena::of(compute);
  scratch_->reserve("expert.hidden", block_rows_, cols_);
}

void ExpertBank::run(const Mat& x, const std::vector<int64_t>& rows_per_expert, const Mat& out) {
  MOE_REQUIRE(rows_per_expert.size() == experts_.size(), "expert bank: one row count per hosted expert");
  // Segments (expert, rows) are packed into the hidden scratch of block_rows_ rows; each full pack is
  // one grouped product through W1, one silu and one grouped product through W2 (one launch each
  // on CUDA). An expert with more rows than the scratch is split over packs (rows are independent).
  std::vector<GemmProblem> first, second;
  int64_t row = 0, packed = 0;
  auto flush = [&] {
    if (packed == 0) return;
    compute_.grouped_gemm(first, false);
    compute_.silu(scratch_->get("expert.hidden", packed, cols_));
    compute_.grouped_gemm(second, false);
    first.clear();
    second.clear();
    packed = 0;
  };
  for (size_t i = 0; i < experts_.size(); ++i) {
    for (int64_t done = 0; done < rows_per_expert[i];) {
      if (packed == block_rows_) flush();
      const int64_t n = std::min(block_rows_ - packed, rows_per_expert[i] - done);
      const Mat h = scratch_->get("expert.hidden", packed + n, cols_).slice_rows(packed, n);
      first.push_back(GemmProblem{x.slice_rows(row, n), w1_[i].view, h});
      second.push_back(GemmProblem{h, w2_[i].view, out.slice_rows(row, n)});
      packed += n;
      row += n;
      done += n;
    }
  }
  flush();
  MOE_REQUIRE(row <= x.rows && row <= out.rows, "expert bank: row counts exceed the input");
}

GrowableMat::GrowableMat(ComputeBackend& compute, int64_t initial_rows, int64_t cols)
    : compute_(compute), cols_(cols), mat_(compute.alloc_mat(std::max<int64_t>(initial_rows, 1), cols)) {}

Mat GrowableMat::rows(int64_t n) {
  if (n > mat_.view.rows) {
    const int64_t grown = std::max(n, mat_.view.rows * 3 / 2);
    compute_.synchronize_all();  // no queued work may still use the old storage
    mat_ = DeviceMat{};          // release first so peak memory does not hold both
    mat_ = compute_.alloc_mat(grown, cols_);
  }
  return mat_.slice_rows(0, n);
}

Gate::Gate(ComputeBackend& compute, const ModelConfig& m, int layer, int64_t max_tokens, const RoutingSource& source)
    : compute_(compute), model_(m), source_(source), layer_(layer) {
  wg_ = load_weight(compute, m, layer, WeightKind::gate, 0, 0, m.hidden, 0, m.experts);
  scratch_ = ScratchArena::of(compute);
  scratch_->reserve("gate.logits", max_tokens, m.experts);
  if (source.kind() == RoutingSource::Kind::gate) scratch_->reserve_vectors("gate.choice", max_tokens * m.top_k);
}

Routing Gate::route(const Mat& z, const TokenBlock& block, const std::vector<double>& multipliers, PhaseTimer& timer) {
  MOE_REQUIRE(block.rows() == z.rows, "Gate::route: the token block does not match the rows");
  MOE_REQUIRE(block.layer == layer_, "Gate::route: the token block is of another layer");
  const Mat logits = scratch_->get("gate.logits", z.rows, model_.experts);
  compute_.gemm(z, wg_.view, logits, false);
  if (source_.kind() == RoutingSource::Kind::gate) {
    const int k = model_.top_k;
    const int64_t n = z.rows * k;
    const IndexVec experts = scratch_->index("gate.choice", n);
    const WeightVec weights = scratch_->weights("gate.choice", n);
    compute_.gate_top_k(logits, multipliers, k, model_.renormalize, experts, weights);
    Routing r = empty_routing(model_.experts, k);
    r.num_tokens = static_cast<int>(z.rows);
    r.expert.resize(static_cast<size_t>(n));
    r.weight.resize(static_cast<size_t>(n));
    compute_.download_index(experts, r.expert.data(), Stream::compute);
    compute_.download_weights(weights, r.weight.data(), Stream::compute);
    compute_.synchronize(Stream::compute);
    ScopedHostWork host(timer, Phase::gate);
    for (int32_t e : r.expert) {
      MOE_REQUIRE(e >= 0 && e < model_.experts, "Gate::route: the device gate chose expert " + std::to_string(e));
      ++r.chosen_per_expert[e];
    }
    return r;
  }
  host_logits_.resize(static_cast<size_t>(logits.elements()));
  compute_.download(logits, host_logits_.data(), Stream::compute);
  compute_.synchronize(Stream::compute);
  ScopedHostWork host(timer, Phase::gate);
  softmax_rows(host_logits_, static_cast<int>(z.rows), model_.experts);
  return source_.route(host_logits_, block, multipliers);
}

}  // namespace moe
