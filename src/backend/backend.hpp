// The two interfaces every strategy is written against: ComputeBackend (device memory, kernels,
// streams, events) and Comm (one process group: collectives and point-to-point on device buffers,
// plus a small host control plane). Implementations: cpu/ (OpenBLAS + MPI), cuda/ (cuBLAS + NCCL).
// Work is issued on streams and ordered with events, so overlapping communication with computation
// is a scheduling decision of the strategy. An implementation may execute eagerly (the CPU one
// does): eager execution satisfies stream ordering trivially.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moe {

enum class DType { f32, f16, bf16 };
int dtype_bytes(DType t);
const char* dtype_name(DType t);
DType parse_dtype(const std::string& s);  // "fp32" | "fp16" | "bf16"

// Non-owning view of a row-major [rows x cols] matrix in device memory of a backend's activation
// dtype. Rows are contiguous (stride == cols).
struct Mat {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  DType dtype = DType::f32;

  int64_t elements() const { return rows * cols; }
  int64_t bytes() const { return elements() * dtype_bytes(dtype); }
  Mat slice_rows(int64_t first_row, int64_t num_rows) const;  // checked
};

// Non-owning view of device int32 / float32 vectors (routing indices, combine weights).
struct IndexVec {
  int32_t* data = nullptr;
  int64_t size = 0;
};
struct WeightVec {
  float* data = nullptr;
  int64_t size = 0;
};

// Owning device allocation. Freed by the backend that made it (which must outlive it).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::shared_ptr<void> storage, int64_t bytes) : storage_(std::move(storage)), bytes_(bytes) {}
  void* data() const { return storage_.get(); }
  int64_t bytes() const { return bytes_; }

 private:
  std::shared_ptr<void> storage_;
  int64_t bytes_ = 0;
};

// A matrix that owns its device storage.
struct DeviceMat {
  DeviceBuffer buffer;
  Mat view;
  Mat slice_rows(int64_t first, int64_t n) const { return view.slice_rows(first, n); }
};
struct DeviceIndex {
  DeviceBuffer buffer;
  IndexVec view;
};
struct DeviceWeights {
  DeviceBuffer buffer;
  WeightVec view;
};

enum class Stream { compute = 0, send = 1, recv = 2 };
constexpr int kNumStreams = 3;

// Opaque handle to a recorded event; valid until the backend's next reset_events().
struct Event {
  int id = -1;
};

// One product of a grouped_gemm: c = a * b, shapes as for ComputeBackend::gemm.
struct GemmProblem {
  Mat a, b, c;
};

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;
  virtual std::string name() const = 0;         // "cpu" | "cuda"
  virtual DType dtype() const = 0;              // activation and weight storage dtype
  // The format stored values are rounded to: dtype() on a device, fp16/bf16 on the CPU backend in
  // its emulated 16-bit mode (fp32 storage). Verification tolerances follow it.
  virtual DType precision() const { return dtype(); }
  virtual std::string device_description() const = 0;

  // ---- memory ----
  virtual DeviceMat alloc_mat(int64_t rows, int64_t cols) = 0;   // zero-initialised
  virtual DeviceIndex alloc_index(int64_t size) = 0;
  virtual DeviceWeights alloc_weights(int64_t size) = 0;
  virtual int64_t allocated_bytes() const = 0;        // currently live
  virtual int64_t peak_allocated_bytes() const = 0;   // high-water mark since the last reset
  virtual void reset_peak_allocated() = 0;            // high-water mark := currently live

  // Host <-> device, host side always float32 / int32. Ordered on `s`; the host buffer must stay
  // valid until the stream is synchronized (download: contents valid after synchronize(s)).
  virtual void upload(const float* host, const Mat& dst, Stream s) = 0;
  virtual void download(const Mat& src, float* host, Stream s) = 0;
  virtual void upload_index(const int32_t* host, const IndexVec& dst, Stream s) = 0;
  virtual void upload_weights(const float* host, const WeightVec& dst, Stream s) = 0;
  virtual void download_index(const IndexVec& src, int32_t* host, Stream s) = 0;
  virtual void download_weights(const WeightVec& src, float* host, Stream s) = 0;

  // ---- kernels (all on `s`, default compute) ----
  // c = a[m x k] * b[k x n] (+ c if accumulate). FP32 accumulation.
  virtual void gemm(const Mat& a, const Mat& b, const Mat& c, bool accumulate, Stream s = Stream::compute) = 0;
  // Every problem's product (+ c if accumulate). Backends that can issue them as one grouped call do
  // (CUDA: cublasGemmGroupedBatchedEx, one launch for all local experts); the default issues them
  // one by one. The problems' c must not overlap.
  virtual void grouped_gemm(const std::vector<GemmProblem>& problems, bool accumulate, Stream s = Stream::compute) {
    for (const GemmProblem& p : problems) gemm(p.a, p.b, p.c, accumulate, s);
  }
  // y = x / sqrt(mean(x^2) + eps) per row (no learned scale). x and y may alias.
  virtual void rms_norm(const Mat& x, const Mat& y, Stream s = Stream::compute) = 0;
  virtual void silu(const Mat& x, Stream s = Stream::compute) = 0;                  // in place
  virtual void add(const Mat& y, const Mat& x, Stream s = Stream::compute) = 0;     // y += x
  virtual void copy(const Mat& src, const Mat& dst, Stream s = Stream::compute) = 0;
  virtual void zero(const Mat& x, Stream s = Stream::compute) = 0;
  // dst[i, :] = src[index[i], :] for i < dst.rows (permute tokens into expert order).
  virtual void gather_rows(const Mat& src, const IndexVec& index, const Mat& dst, Stream s = Stream::compute) = 0;
  // dst[t, :] (+)= sum_j weight[t*k + j] * src[slot[t*k + j], :] for t < dst.rows, j < k; slot < 0
  // is skipped (dropped assignment). Deterministic: j ascending.
  virtual void weighted_combine(const Mat& src, const IndexVec& slot, const WeightVec& weight, int k, const Mat& dst,
                                bool accumulate, Stream s = Stream::compute) = 0;
  // The gate's per-token rule (core/gate_rule.hpp) for each row t of logits [T x E]: softmax,
  // the top_k experts by probability * multipliers[e] (ties to the lower index) into
  // experts[t*top_k + j], and their combine weights into weights[t*top_k + j]. `multipliers` is
  // a host vector [E]; it is copied before the call returns.
  virtual void gate_top_k(const Mat& logits, const std::vector<double>& multipliers, int top_k, bool renormalize,
                          const IndexVec& experts, const WeightVec& weights, Stream s = Stream::compute) = 0;
  // Causal multi-head attention with a KV cache, for `num_seq` sequences each with `past_len`
  // cached positions and `new_len` new ones. q, k_new, v_new: [num_seq*new_len x heads*head_dim],
  // sequence-major. k_cache, v_cache: [num_seq*max_len x heads*head_dim]; k_new / v_new are first
  // written at positions past_len .. past_len+new_len-1. out: [num_seq*new_len x heads*head_dim].
  // Position i attends to positions 0..past_len+i with softmax(q k^T / sqrt(head_dim)).
  virtual void attention(const Mat& q, const Mat& k_new, const Mat& v_new, const Mat& k_cache, const Mat& v_cache,
                         int num_seq, int past_len, int new_len, int max_len, int heads, int head_dim,
                         const Mat& out, Stream s = Stream::compute) = 0;

  // ---- ordering and timing ----
  virtual Event record(Stream s) = 0;
  // An event at host time `t` (in the past): for eager backends, whose transfers complete when a
  // thread observes it. Backends that time on the device record now.
  virtual Event record_at(std::chrono::steady_clock::time_point /*t*/) { return record(Stream::compute); }
  virtual void wait(Stream waiter, Event e) = 0;   // later work on `waiter` starts after `e`
  virtual void synchronize(Stream s) = 0;
  virtual void synchronize_all() = 0;
  // Milliseconds between two recorded events (both must have completed).
  virtual double elapsed_ms(Event start, Event end) = 0;
  virtual void reset_events() = 0;                 // recycle event handles (between steps)
  // Named range for profilers (NVTX on CUDA); no-op elsewhere.
  virtual void range_push(const char* /*name*/) {}
  virtual void range_pop() {}
  // Eager backends call `hook` between blocks of long kernels, so that posted communication makes
  // progress while the host computes (Open MPI advances transfers only inside MPI calls). Backends
  // that run kernels asynchronously ignore it.
  virtual void set_progress_hook(std::function<void()> /*hook*/) {}

  // ---- counters (what the runtime actually did) ----
  virtual int64_t flops() const = 0;               // 2*m*n*k per gemm + attention matmuls
  virtual void reset_counters() = 0;
};

// Bytes this rank sent to each world rank, by the data plane (device buffers).
struct TrafficCounters {
  std::vector<int64_t> bytes_to_rank;  // [world]
  void add(int world_peer, int64_t bytes) { bytes_to_rank.at(world_peer) += bytes; }
  void reset() { std::fill(bytes_to_rank.begin(), bytes_to_rank.end(), 0); }
};

// A posted data-plane transfer; complete it with Comm::wait or Comm::wait_next_source.
struct CommHandle {
  int id = -1;
};

// One process group. Data-plane operations act on device buffers, ordered on a stream.
// Control-plane operations (host vectors) are blocking and collective over the group.
//
// Posted transfers (post_*) return at once: the transfer is ordered after the work already issued
// on `s` and runs on the communication streams, and its buffers must stay untouched until it is
// completed. Every rank posts the same sequence of transfers (empty ones included), so that
// transfers match in order without tags chosen by the caller.
class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int world_rank_of(int group_rank) const = 0;

  // ---- data plane ----
  virtual void all_reduce_sum(const Mat& x, Stream s) = 0;
  // Rows for peer p are send.rows [sum(send_rows[<p]), +send_rows[p]); received rows from p land
  // at recv offset sum(recv_rows[<p]). send_rows/recv_rows: [size], must match the peers' counts.
  virtual void all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                            const std::vector<int64_t>& recv_rows, Stream s) = 0;
  virtual void send(const Mat& x, int peer, Stream s) = 0;
  virtual void recv(const Mat& x, int peer, Stream s) = 0;

  // ---- data plane, posted ----
  virtual CommHandle post_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                                       const std::vector<int64_t>& recv_rows, Stream s) = 0;
  virtual CommHandle post_send(const Mat& x, int peer, Stream s) = 0;
  virtual CommHandle post_recv(const Mat& x, int peer, Stream s) = 0;
  // Completes `h`: later work on `waiter` sees the received rows and the send buffer may be reused.
  // Returns an event of the completion (recorded on the compute backend; for spans and traces).
  virtual Event wait(CommHandle h, Stream waiter) = 0;
  // Partial arrival for an all-to-all: the next source whose rows have arrived (each source once,
  // in arrival order; later work on `waiter` sees its rows), or -1 after the last one, when the
  // whole exchange is complete and `*done` is its completion event.
  virtual int wait_next_source(CommHandle h, Stream waiter, Event* done) = 0;
  // Advances posted transfers without blocking (eager backends call it between kernels).
  virtual void progress() {}

  // ---- control plane (host, blocking) ----
  // `per_peer` values to each peer: send[p*per_peer + i] goes to peer p, and out[p*per_peer + i] is
  // what peer p put at [rank()*per_peer + i] of its `send`.
  virtual std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send, int per_peer) = 0;
  virtual void all_reduce_sum_host(std::vector<int64_t>& values) = 0;
  virtual void all_reduce_max_host(std::vector<double>& values) = 0;
  virtual void all_reduce_sum_host(std::vector<double>& values) = 0;
  // Exclusive prefix sum over ranks 0..rank()-1 (zeros on rank 0).
  virtual std::vector<int64_t> exclusive_scan_host(const std::vector<int64_t>& values) = 0;
  virtual void broadcast_host(std::vector<float>& values, int root) = 0;
  // Concatenation of every rank's `values` in rank order, returned on `root` (empty elsewhere).
  virtual std::vector<float> gather_host(const std::vector<float>& values, int root) = 0;
  virtual std::vector<double> gather_host(const std::vector<double>& values, int root) = 0;
  virtual void barrier() = 0;

  // Sub-group of ranks with the same color, ordered by key. Collective over this group.
  virtual std::unique_ptr<Comm> split(int color, int key) = 0;

  // Counters are shared by a root communicator and every group split from it.
  virtual TrafficCounters& traffic() = 0;
};

}  // namespace moe
