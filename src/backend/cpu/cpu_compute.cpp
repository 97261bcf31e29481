// CPU ComputeBackend: plain loops for elementwise kernels, cblas_sgemm for matrix products.
// Events carry wall-clock timestamps taken when recorded (work before them has completed).
// Emulated 16-bit mode: storage and arithmetic stay fp32, and every kernel rounds what it stores to
// the 16-bit format (round16.hpp), as a device that stores fp16/bf16 and accumulates in fp32 does.
#include "backend/cpu/cpu_compute.hpp"

#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "backend/round16.hpp"
#include "core/error.hpp"
#include "core/gate_rule.hpp"

namespace moe {
namespace {

float* f(const Mat& m) { return static_cast<float*>(m.data); }

void require_f32(const Mat& m, const char* what) {
  MOE_REQUIRE(m.dtype == DType::f32, std::string("cpu backend: ") + what + " must be fp32");
  MOE_REQUIRE(m.data != nullptr || m.elements() == 0, std::string("cpu backend: ") + what + " is null");
}

void require_same_shape(const Mat& a, const Mat& b, const char* op) {
  MOE_REQUIRE(a.rows == b.rows && a.cols == b.cols,
              std::string(op) + ": shape mismatch [" + std::to_string(a.rows) + " x " + std::to_string(a.cols) + "] vs [" +
                  std::to_string(b.rows) + " x " + std::to_string(b.cols) + "]");
}

class CpuCompute : public ComputeBackend {
 public:
  // One BLAS thread per rank: ranks already occupy the cores.
  explicit CpuCompute(DType precision) : precision_(precision) { openblas_set_num_threads(1); }
  std::string name() const override { return "cpu"; }
  DType dtype() const override { return DType::f32; }
  DType precision() const override { return precision_; }
  std::string device_description() const override {
    if (precision_ == DType::f32) return "CPU (OpenBLAS, fp32)";
    return std::string("CPU (OpenBLAS, fp32 arithmetic, ") + dtype_name(precision_) + " emulated on every store)";
  }

  DeviceMat alloc_mat(int64_t rows, int64_t cols) override {
    DeviceMat m;
    m.buffer = alloc_bytes(rows * cols * 4);
    m.view = Mat{m.buffer.data(), rows, cols, DType::f32};
    return m;
  }
  DeviceIndex alloc_index(int64_t size) override {
    DeviceIndex d;
    d.buffer = alloc_bytes(size * 4);
    d.view = IndexVec{static_cast<int32_t*>(d.buffer.data()), size};
    return d;
  }
  DeviceWeights alloc_weights(int64_t size) override {
    DeviceWeights d;
    d.buffer = alloc_bytes(size * 4);
    d.view = WeightVec{static_cast<float*>(d.buffer.data()), size};
    return d;
  }
  int64_t allocated_bytes() const override { return *live_; }
  int64_t peak_allocated_bytes() const override { return *peak_; }
  void reset_peak_allocated() override { *peak_ = *live_; }

  void upload(const float* host, const Mat& dst, Stream) override {
    require_f32(dst, "upload destination");
    if (dst.elements()) std::memcpy(dst.data, host, dst.elements() * 4);
    round_stored(f(dst), dst.elements());
  }
  void download(const Mat& src, float* host, Stream) override {
    require_f32(src, "download source");
    if (src.elements()) std::memcpy(host, src.data, src.elements() * 4);
  }
  void upload_index(const int32_t* host, const IndexVec& dst, Stream) override {
    if (dst.size) std::memcpy(dst.data, host, dst.size * 4);
  }
  void upload_weights(const float* host, const WeightVec& dst, Stream) override {
    if (dst.size) std::memcpy(dst.data, host, dst.size * 4);
  }
  void download_index(const IndexVec& src, int32_t* host, Stream) override {
    if (src.size) std::memcpy(host, src.data, src.size * 4);
  }
  void download_weights(const WeightVec& src, float* host, Stream) override {
    if (src.size) std::memcpy(host, src.data, src.size * 4);
  }

  void gate_top_k(const Mat& logits, const std::vector<double>& multipliers, int top_k, bool renormalize,
                  const IndexVec& experts, const WeightVec& weights, Stream) override {
    poll();
    require_f32(logits, "gate logits");
    const int64_t E = logits.cols;
    MOE_REQUIRE(E > 0 && top_k >= 1 && top_k <= E && int64_t(multipliers.size()) == E,
                "gate_top_k: need 1 <= top_k <= experts and one multiplier per expert");
    MOE_REQUIRE(experts.size >= logits.rows * top_k && weights.size >= logits.rows * top_k,
                "gate_top_k: outputs smaller than rows x top_k");
    std::vector<float> probs(E);
    for (int64_t t = 0; t < logits.rows; ++t)
      gate_token(f(logits) + t * E, multipliers.data(), static_cast<int>(E), top_k, renormalize, probs.data(),
                 experts.data + t * top_k, weights.data + t * top_k);
  }

  void gemm(const Mat& a, const Mat& b, const Mat& c, bool accumulate, Stream) override {
    require_f32(a, "gemm a");
    require_f32(b, "gemm b");
    require_f32(c, "gemm c");
    MOE_REQUIRE(a.cols == b.rows && c.rows == a.rows && c.cols == b.cols,
                "gemm: [" + std::to_string(a.rows) + " x " + std::to_string(a.cols) + "] * [" + std::to_string(b.rows) +
                    " x " + std::to_string(b.cols) + "] -> [" + std::to_string(c.rows) + " x " + std::to_string(c.cols) + "]");
    if (c.elements() == 0) return;
    if (a.cols == 0) {
      if (!accumulate) std::memset(c.data, 0, c.bytes());
      return;
    }
    // With a progress hook, rows go in blocks of about kProgressFlops each, the hook between blocks.
    const int64_t row_flops = 2 * b.cols * a.cols;
    const int64_t block = progress_ ? std::max<int64_t>(8, kProgressFlops / std::max<int64_t>(row_flops, 1)) : a.rows;
    for (int64_t r0 = 0; r0 < a.rows; r0 += block) {
      const int64_t rows = std::min(block, a.rows - r0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(b.cols),
                  static_cast<int>(a.cols), 1.0f, f(a) + r0 * a.cols, static_cast<int>(a.cols), f(b),
                  static_cast<int>(b.cols), accumulate ? 1.0f : 0.0f, f(c) + r0 * c.cols, static_cast<int>(c.cols));
      round_stored(f(c) + r0 * c.cols, rows * c.cols);
      poll();
    }
    flops_ += 2 * a.rows * b.cols * a.cols;
  }

  void rms_norm(const Mat& x, const Mat& y, Stream) override {
    poll();
    require_f32(x, "rms_norm x");
    require_f32(y, "rms_norm y");
    require_same_shape(x, y, "rms_norm");
    for (int64_t r = 0; r < x.rows; ++r) {
      const float* in = f(x) + r * x.cols;
      float* out = f(y) + r * y.cols;
      double ss = 0;
      for (int64_t c = 0; c < x.cols; ++c) ss += static_cast<double>(in[c]) * in[c];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(x.cols) + 1e-5));
      for (int64_t c = 0; c < x.cols; ++c) out[c] = in[c] * inv;
      round_stored(out, x.cols);
    }
  }

  void silu(const Mat& x, Stream) override {
    poll();
    require_f32(x, "silu x");
    float* p = f(x);
    for (int64_t i = 0; i < x.elements(); ++i) p[i] = p[i] / (1.0f + std::exp(-p[i]));
    round_stored(p, x.elements());
  }

  void add(const Mat& y, const Mat& x, Stream) override {
    poll();
    require_f32(y, "add y");
    require_f32(x, "add x");
    require_same_shape(x, y, "add");
    for (int64_t i = 0; i < y.elements(); ++i) f(y)[i] += f(x)[i];
    round_stored(f(y), y.elements());
  }

  void copy(const Mat& src, const Mat& dst, Stream) override {
    poll();
    require_same_shape(src, dst, "copy");
    if (src.elements()) std::memmove(dst.data, src.data, src.bytes());
  }

  void zero(const Mat& x, Stream) override {
    if (x.elements()) std::memset(x.data, 0, x.bytes());
  }

  void gather_rows(const Mat& src, const IndexVec& index, const Mat& dst, Stream) override {
    poll();
    MOE_REQUIRE(src.cols == dst.cols && index.size >= dst.rows, "gather_rows: shape mismatch");
    for (int64_t i = 0; i < dst.rows; ++i) {
      const int32_t r = index.data[i];
      MOE_REQUIRE(r >= 0 && r < src.rows, "gather_rows: index " + std::to_string(r) + " outside " + std::to_string(src.rows) + " rows");
      std::memcpy(f(dst) + i * dst.cols, f(src) + r * src.cols, dst.cols * 4);
    }
  }

  void weighted_combine(const Mat& src, const IndexVec& slot, const WeightVec& weight, int k, const Mat& dst,
                        bool accumulate, Stream) override {
    poll();
    MOE_REQUIRE(src.cols == dst.cols && slot.size >= dst.rows * k && weight.size >= dst.rows * k,
                "weighted_combine: shape mismatch");
    for (int64_t t = 0; t < dst.rows; ++t) {
      float* out = f(dst) + t * dst.cols;
      if (!accumulate) std::memset(out, 0, dst.cols * 4);
      for (int j = 0; j < k; ++j) {
        const int32_t s = slot.data[t * k + j];
        if (s < 0) continue;
        MOE_REQUIRE(s < src.rows, "weighted_combine: slot " + std::to_string(s) + " outside " + std::to_string(src.rows) + " rows");
        const float w = weight.data[t * k + j];
        const float* in = f(src) + s * src.cols;
        for (int64_t c = 0; c < dst.cols; ++c) out[c] += w * in[c];
      }
      round_stored(out, dst.cols);
    }
  }

  void attention(const Mat& q, const Mat& k_new, const Mat& v_new, const Mat& k_cache, const Mat& v_cache, int num_seq,
                 int past_len, int new_len, int max_len, int heads, int head_dim, const Mat& out, Stream) override {
    const int64_t hd = static_cast<int64_t>(heads) * head_dim;
    MOE_REQUIRE(q.cols == hd && k_new.cols == hd && v_new.cols == hd && k_cache.cols == hd && v_cache.cols == hd &&
                    out.cols == hd,
                "attention: column count must be heads*head_dim");
    MOE_REQUIRE(q.rows == int64_t(num_seq) * new_len && k_new.rows == q.rows && v_new.rows == q.rows && out.rows == q.rows,
                "attention: q/k/v/out rows must be num_seq*new_len");
    MOE_REQUIRE(k_cache.rows == int64_t(num_seq) * max_len && v_cache.rows == k_cache.rows,
                "attention: cache rows must be num_seq*max_len");
    MOE_REQUIRE(past_len + new_len <= max_len, "attention: KV cache overflow (" + std::to_string(past_len + new_len) +
                                                   " positions > capacity " + std::to_string(max_len) + ")");
    const int ctx = past_len + new_len;
    std::vector<float> scores(static_cast<size_t>(new_len) * ctx);
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (int s = 0; s < num_seq; ++s) {
      // Append the new keys/values at positions past_len.. of this sequence's cache.
      std::memcpy(f(k_cache) + (int64_t(s) * max_len + past_len) * hd, f(k_new) + int64_t(s) * new_len * hd, int64_t(new_len) * hd * 4);
      std::memcpy(f(v_cache) + (int64_t(s) * max_len + past_len) * hd, f(v_new) + int64_t(s) * new_len * hd, int64_t(new_len) * hd * 4);
      const float* kc = f(k_cache) + int64_t(s) * max_len * hd;
      const float* vc = f(v_cache) + int64_t(s) * max_len * hd;
      for (int h = 0; h < heads; ++h) {
        const float* qh = f(q) + int64_t(s) * new_len * hd + int64_t(h) * head_dim;
        // scores[i][j] = q_i . k_j * scale, over the full context (masked below).
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, new_len, ctx, head_dim, scale, qh, static_cast<int>(hd),
                    kc + int64_t(h) * head_dim, static_cast<int>(hd), 0.0f, scores.data(), ctx);
        for (int i = 0; i < new_len; ++i) {
          if (i % 64 == 63) poll();
          float* row = scores.data() + int64_t(i) * ctx;
          const int visible = past_len + i + 1;  // causal: positions 0..past_len+i
          float mx = row[0];
          for (int j = 1; j < visible; ++j) mx = std::max(mx, row[j]);
          double sum = 0;
          for (int j = 0; j < visible; ++j) {
            row[j] = std::exp(row[j] - mx);
            sum += row[j];
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int j = 0; j < visible; ++j) row[j] *= inv;
          round_stored(row, visible);  // probabilities are stored in the 16-bit format for P.V
          for (int j = visible; j < ctx; ++j) row[j] = 0.0f;
        }
        float* oh = f(out) + int64_t(s) * new_len * hd + int64_t(h) * head_dim;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, new_len, head_dim, ctx, 1.0f, scores.data(), ctx,
                    vc + int64_t(h) * head_dim, static_cast<int>(hd), 0.0f, oh, static_cast<int>(hd));
        for (int i = 0; i < new_len; ++i) round_stored(oh + int64_t(i) * hd, head_dim);
        flops_ += 4LL * new_len * ctx * head_dim;
        poll();
      }
    }
  }

  Event record(Stream) override { return record_at(std::chrono::steady_clock::now()); }
  Event record_at(std::chrono::steady_clock::time_point t) override {
    times_.push_back(t);
    return Event{static_cast<int>(times_.size()) - 1};
  }
  void wait(Stream, Event) override {}
  void synchronize(Stream) override {}
  void synchronize_all() override {}
  double elapsed_ms(Event start, Event end) override {
    MOE_REQUIRE(start.id >= 0 && end.id >= 0 && start.id < int(times_.size()) && end.id < int(times_.size()),
                "elapsed_ms: unknown event");
    return std::chrono::duration<double, std::milli>(times_[end.id] - times_[start.id]).count();
  }
  void reset_events() override { times_.clear(); }
  void set_progress_hook(std::function<void()> hook) override { progress_ = std::move(hook); }
  // Posted transfers advance: at every kernel and between blocks of the long ones.
  void poll() {
    if (progress_) progress_();
  }

  int64_t flops() const override { return flops_; }
  void reset_counters() override { flops_ = 0; }

 private:
  // The value a 16-bit store keeps (no-op in fp32).
  void round_stored(float* p, int64_t n) const {
    if (precision_ == DType::f16)
      for (int64_t i = 0; i < n; ++i) p[i] = round_to_fp16(p[i]);
    else if (precision_ == DType::bf16)
      for (int64_t i = 0; i < n; ++i) p[i] = round_to_bf16(p[i]);
  }

  DeviceBuffer alloc_bytes(int64_t bytes) {
    MOE_REQUIRE(bytes >= 0, "negative allocation");
    const int64_t n = std::max<int64_t>(bytes, 4);
    void* p = std::calloc(1, static_cast<size_t>(n));
    MOE_REQUIRE(p != nullptr, "cpu backend: out of memory allocating " + std::to_string(bytes) + " bytes");
    *live_ += bytes;
    *peak_ = std::max(*peak_, *live_);
    auto live = live_;
    std::shared_ptr<void> storage(p, [live, bytes](void* q) {
      std::free(q);
      *live -= bytes;
    });
    return DeviceBuffer(storage, bytes);
  }

  DType precision_;
  std::shared_ptr<int64_t> live_ = std::make_shared<int64_t>(0);
  std::shared_ptr<int64_t> peak_ = std::make_shared<int64_t>(0);
  int64_t flops_ = 0;
  // Work between two progress calls: about 0.1-0.3 ms of one core's sgemm.
  static constexpr int64_t kProgressFlops = int64_t(1) << 23;
  std::function<void()> progress_;
  std::vector<std::chrono::steady_clock::time_point> times_;
};

}  // namespace

std::unique_ptr<ComputeBackend> make_cpu_compute(DType precision) { return std::make_unique<CpuCompute>(precision); }

}  // namespace moe
