// CudaComputeBackend: resource lifetime, memory accounting, host <-> device conversion, cuBLAS
// products, kernel dispatch with Mat-level checks, events and error-aware synchronisation.
#include "backend/cuda/cuda_compute.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launch_math.hpp"
#include "backend/env_number.hpp"
#include "backend/wait_policy.hpp"
#include "core/error.hpp"
#include "core/watchdog.hpp"

#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define MOE_HAVE_NVTX 1
#endif

namespace moe {
namespace {

constexpr float kRmsEps = 1e-5f;

void require_ok(const std::string& problem) { MOE_REQUIRE(problem.empty(), problem); }

// Clears a not-ready status some runtimes leave as the last error after polling, keeping real errors.
void clear_not_ready() {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess && e != cudaErrorNotReady) throw_cuda_error(e, "cudaGetLastError()", __FILE__, __LINE__);
}

}  // namespace

CudaBackendOptions cuda_backend_options_from_env() {
  CudaBackendOptions o;
  o.attention_workspace_bytes =
      static_cast<int64_t>(env_number("MOE_CUDA_ATTENTION_WORKSPACE_MB", double(o.attention_workspace_bytes >> 20)) * (1 << 20));
  o.staging_bytes = static_cast<int64_t>(env_number("MOE_CUDA_STAGING_MB", double(o.staging_bytes >> 20)) * (1 << 20));
  o.sync_timeout_s = device_wait_timeout_s(watchdog::timeout_s(), std::getenv("MOE_CUDA_SYNC_TIMEOUT_S"));
  if (o.staging_bytes < 4096) throw ConfigError("MOE_CUDA_STAGING_MB", "staging buffer must be at least 4 KiB");
  return o;
}

CudaComputeBackend::CudaComputeBackend(DType dtype, int device, CudaBackendOptions options)
    : dtype_(dtype), device_(device), options_(options) {
  MOE_REQUIRE(options_.staging_bytes >= 4096 && options_.attention_workspace_bytes >= 4096 && options_.initial_events >= 0,
              "cuda backend: workspace sizes must be at least 4 KiB");
  try {
    MOE_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    MOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    char bus[32] = {0};
    MOE_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), device_));
    char text[512];
    std::snprintf(text, sizeof(text), "%s (device %d, sm_%d%d, %.1f GiB, PCI %s, %s)", prop.name, device_, prop.major,
                  prop.minor, double(prop.totalGlobalMem) / double(1 << 30), bus, dtype_name(dtype_));
    description_ = text;

    // Communication streams get the higher priority so that NCCL kernels are scheduled promptly
    // while the compute stream keeps the SMs busy (overlap).
    int least = 0, greatest = 0;
    MOE_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    for (int i = 0; i < kNumStreams; ++i) {
      const int priority = i == static_cast<int>(Stream::compute) ? least : greatest;
      MOE_CUDA_CHECK(cudaStreamCreateWithPriority(&streams_[i], cudaStreamNonBlocking, priority));
      MOE_CUBLAS_CHECK(cublasCreate(&blas_[i]));
      MOE_CUBLAS_CHECK(cublasSetStream(blas_[i], streams_[i]));
    }
    events_.resize(options_.initial_events, nullptr);
    for (auto& e : events_) MOE_CUDA_CHECK(cudaEventCreate(&e));
    for (SharedScratch* s : {&staging_, &attention_}) {
      s->bytes = s == &staging_ ? options_.staging_bytes : options_.attention_workspace_bytes;
      MOE_CUDA_CHECK(cudaMalloc(&s->data, static_cast<size_t>(s->bytes)));
      MOE_CUDA_CHECK(cudaEventCreateWithFlags(&s->released, cudaEventDisableTiming));
    }
    MOE_CUDA_CHECK(cudaHostAlloc(&pinned_, static_cast<size_t>(options_.staging_bytes), cudaHostAllocDefault));
    pinned_ring_ = std::make_unique<StagingRing>(options_.staging_bytes);
    void* word = nullptr;
    MOE_CUDA_CHECK(cudaHostAlloc(&word, sizeof(cuda::DeviceErrorWord), cudaHostAllocMapped));
    error_word_host_ = static_cast<cuda::DeviceErrorWord*>(word);
    *error_word_host_ = cuda::DeviceErrorWord{0, 0, 0};
    void* dev = nullptr;
    MOE_CUDA_CHECK(cudaHostGetDevicePointer(&dev, word, 0));
    error_word_device_ = static_cast<cuda::DeviceErrorWord*>(dev);
  } catch (...) {
    destroy_resources();
    throw;
  }
}

CudaComputeBackend::~CudaComputeBackend() { destroy_resources(); }

void CudaComputeBackend::destroy_resources() noexcept {
  // After a failure, queued NCCL kernels may never finish and every call below could wait on them:
  // leave the resources to the process's end, which abort_job brings at once.
  if (!device_teardown_may_wait()) return;
  cudaSetDevice(device_);
  for (cudaStream_t st : streams_)
    if (st != nullptr) cudaStreamSynchronize(st);  // errors ignored: tearing down
  for (auto& h : blas_)
    if (h != nullptr) cublasDestroy(h), h = nullptr;
  for (auto& e : events_)
    if (e != nullptr) cudaEventDestroy(e), e = nullptr;
  for (SharedScratch* s : {&staging_, &attention_}) {
    if (s->data != nullptr) cudaFree(s->data), s->data = nullptr;
    if (s->released != nullptr) cudaEventDestroy(s->released), s->released = nullptr;
  }
  for (auto& [id, e] : fences_) cudaEventDestroy(e);
  fences_.clear();
  for (cudaEvent_t e : spare_fence_events_) cudaEventDestroy(e);
  spare_fence_events_.clear();
  if (pinned_ != nullptr) cudaFreeHost(pinned_), pinned_ = nullptr;
  for (auto& st : streams_)
    if (st != nullptr) cudaStreamDestroy(st), st = nullptr;
  if (error_word_host_ != nullptr) cudaFreeHost(error_word_host_), error_word_host_ = nullptr;
}

cudaStream_t CudaComputeBackend::stream(Stream s) const {
  const int i = static_cast<int>(s);
  MOE_REQUIRE(i >= 0 && i < kNumStreams, "unknown stream");
  return streams_[i];
}

int64_t CudaComputeBackend::workspace_bytes() const { return staging_.bytes + attention_.bytes; }

// ---- memory ----

DeviceBuffer CudaComputeBackend::alloc_bytes(int64_t bytes) {
  MOE_REQUIRE(bytes >= 0, "negative allocation");
  const int64_t n = std::max<int64_t>(bytes, 256);  // never null, even for empty views
  void* p = nullptr;
  const cudaError_t rc = cudaMalloc(&p, static_cast<size_t>(n));
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // allocation failure is not sticky; keep it out of later checks
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error("cuda backend: cannot allocate " + std::to_string(bytes) + " bytes on device " +
                std::to_string(device_) + " (" + cudaGetErrorString(rc) + "; " + std::to_string(memory_->live_bytes) +
                " bytes live, " + std::to_string(free_b) + " of " + std::to_string(total_b) + " bytes free)");
  }
  // Zero-initialised and complete before the buffer is used on any stream (allocation is setup work).
  cudaError_t zrc = cudaMemsetAsync(p, 0, static_cast<size_t>(n), streams_[0]);
  if (zrc == cudaSuccess) zrc = cudaStreamSynchronize(streams_[0]);
  if (zrc != cudaSuccess) {
    cudaFree(p);
    throw_cuda_error(zrc, "cudaMemsetAsync(new allocation)", __FILE__, __LINE__);
  }
  memory_->live_bytes += bytes;
  memory_->peak_bytes = std::max(memory_->peak_bytes, memory_->live_bytes);
  auto counters = memory_;
  std::shared_ptr<void> storage(p, [counters, bytes](void* q) {
    // cudaFree waits for the device: not while failing (see destroy_resources). Cannot throw here;
    // a failure means the context is already gone.
    if (device_teardown_may_wait()) cudaFree(q);
    counters->live_bytes -= bytes;
  });
  return DeviceBuffer(storage, bytes);
}

DeviceMat CudaComputeBackend::alloc_mat(int64_t rows, int64_t cols) {
  MOE_REQUIRE(rows >= 0 && cols >= 0, "alloc_mat: negative shape");
  DeviceMat m;
  m.buffer = alloc_bytes(rows * cols * dtype_bytes(dtype_));
  m.view = Mat{m.buffer.data(), rows, cols, dtype_};
  return m;
}

DeviceIndex CudaComputeBackend::alloc_index(int64_t size) {
  DeviceIndex d;
  d.buffer = alloc_bytes(size * 4);
  d.view = IndexVec{static_cast<int32_t*>(d.buffer.data()), size};
  return d;
}

DeviceWeights CudaComputeBackend::alloc_weights(int64_t size) {
  DeviceWeights d;
  d.buffer = alloc_bytes(size * 4);
  d.view = WeightVec{static_cast<float*>(d.buffer.data()), size};
  return d;
}

void CudaComputeBackend::acquire(SharedScratch& scratch, Stream s) {
  const int i = static_cast<int>(s);
  if (scratch.last_stream >= 0 && scratch.last_stream != i)
    MOE_CUDA_CHECK(cudaStreamWaitEvent(stream(s), scratch.released, 0));
}

void CudaComputeBackend::release(SharedScratch& scratch, Stream s) {
  MOE_CUDA_CHECK(cudaEventRecord(scratch.released, stream(s)));
  scratch.last_stream = static_cast<int>(s);
}

// ---- host <-> device ----
// Uploads go through the pinned ring (copy_to_device): the caller's host buffer may be freed as
// soon as the call returns, and the device copy is truly asynchronous. fp32 matrices copy directly;
// fp16/bf16 land in the shared fp32 device staging buffer piece by piece and a conversion kernel
// writes the destination. Reusing the device staging buffer between pieces is safe because both
// steps of a piece are ordered on the same stream before the next piece's copy. Downloads are into
// pageable memory: their contents are only valid after synchronize() anyway.

uint64_t CudaComputeBackend::fence_on(cudaStream_t st) {
  cudaEvent_t e = nullptr;
  if (!spare_fence_events_.empty()) {
    e = spare_fence_events_.back();
    spare_fence_events_.pop_back();
  } else {
    MOE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  MOE_CUDA_CHECK(cudaEventRecord(e, st));
  const uint64_t id = next_fence_++;
  fences_[id] = e;
  pinned_ring_->fence(id);
  return id;
}

void CudaComputeBackend::wait_fence(uint64_t fence) {
  const auto it = fences_.find(fence);
  MOE_REQUIRE(it != fences_.end(), "pinned staging: unknown fence");
  cudaError_t failure = cudaSuccess;
  const WaitResult r = poll_until(Deadline::from_now(options_.sync_timeout_s), [&] {
    const cudaError_t rc = cudaEventQuery(it->second);
    if (rc == cudaSuccess) return PollState::done;
    if (rc != cudaErrorNotReady) return failure = rc, PollState::failed;
    for (auto& poll : polls_) poll.second();
    return PollState::pending;
  });
  if (r == WaitResult::failed) throw_cuda_error(failure, "cudaEventQuery(pinned staging fence)", __FILE__, __LINE__);
  if (r == WaitResult::expired)
    watchdog::abort_job("[rank " + std::to_string(watchdog::world_rank()) + "] timeout (run.timeout_s) waiting for " +
                            "a host-to-device copy in " + describe_activity(),
                        1);
  clear_not_ready();
  spare_fence_events_.push_back(it->second);
  fences_.erase(it);
}

void CudaComputeBackend::copy_to_device(void* dst, const void* host, int64_t bytes, cudaStream_t st,
                                        const std::function<void(int64_t, int64_t)>& after_piece) {
  // Completed fences free their regions (and events) without waiting.
  pinned_ring_->retire([&](uint64_t f) {
    const auto it = fences_.find(f);
    if (it == fences_.end() || cudaEventQuery(it->second) != cudaSuccess) return false;
    spare_fence_events_.push_back(it->second);
    fences_.erase(it);
    return true;
  });
  clear_not_ready();
  // Pieces of at most half the ring, so one piece can be staged while the previous one copies.
  const int64_t piece = std::max<int64_t>(pinned_ring_->capacity() / 2 / StagingRing::kAlign * StagingRing::kAlign,
                                          StagingRing::kAlign);
  for (int64_t off = 0; off < bytes; off += piece) {
    const int64_t n = std::min(piece, bytes - off);
    const int64_t at = pinned_ring_->take(n, [this](uint64_t f) { wait_fence(f); });
    MOE_REQUIRE(at >= 0, "pinned staging: a piece exceeds the ring");
    char* staged = static_cast<char*>(pinned_) + at;
    std::memcpy(staged, static_cast<const char*>(host) + off, static_cast<size_t>(n));
    MOE_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, staged, static_cast<size_t>(n), cudaMemcpyHostToDevice, st));
    if (after_piece) after_piece(off, n);
    fence_on(st);
  }
}

void CudaComputeBackend::upload(const float* host, const Mat& dst, Stream s) {
  require_ok(cuda::check_mat(dst, dtype_, "upload destination"));
  const int64_t n = dst.elements();
  if (n == 0) return;
  MOE_REQUIRE(host != nullptr, "upload: null host pointer");
  cudaStream_t st = stream(s);
  if (dtype_ == DType::f32) {
    copy_to_device(dst.data, host, n * 4, st);
    return;
  }
  acquire(staging_, s);
  const int64_t piece = staging_.bytes / 4;
  const int eb = dtype_bytes(dtype_);
  for (int64_t off = 0; off < n; off += piece) {
    const int64_t count = std::min(piece, n - off);
    // The fp32 piece goes to the device staging buffer; each pinned sub-piece is converted there.
    copy_to_device(staging_.data, host + off, count * 4, st, [&](int64_t byte_off, int64_t bytes) {
      cuda::launch_convert_from_f32(static_cast<const float*>(staging_.data) + byte_off / 4,
                                    static_cast<char*>(dst.data) + (off + byte_off / 4) * eb, dtype_, bytes / 4, st);
    });
  }
  release(staging_, s);
}

void CudaComputeBackend::download(const Mat& src, float* host, Stream s) {
  require_ok(cuda::check_mat(src, dtype_, "download source"));
  const int64_t n = src.elements();
  if (n == 0) return;
  MOE_REQUIRE(host != nullptr, "download: null host pointer");
  cudaStream_t st = stream(s);
  // A copy into pageable memory blocks the host until the stream reaches it; waiting first through
  // wait_stream keeps that wait interruptible by NCCL error polling.
  if (dtype_ == DType::f32) {
    wait_stream(s);
    MOE_CUDA_CHECK(cudaMemcpyAsync(host, src.data, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToHost, st));
    return;
  }
  acquire(staging_, s);
  const int64_t piece = staging_.bytes / 4;
  const int eb = dtype_bytes(dtype_);
  for (int64_t off = 0; off < n; off += piece) {
    const int64_t count = std::min(piece, n - off);
    cuda::launch_convert_to_f32(static_cast<const char*>(src.data) + off * eb, dtype_, static_cast<float*>(staging_.data),
                                count, st);
    wait_stream(s);
    MOE_CUDA_CHECK(cudaMemcpyAsync(host + off, staging_.data, static_cast<size_t>(count) * 4, cudaMemcpyDeviceToHost, st));
  }
  release(staging_, s);
}

void CudaComputeBackend::upload_index(const int32_t* host, const IndexVec& dst, Stream s) {
  MOE_REQUIRE(dst.size >= 0, "upload_index: negative size");
  if (dst.size == 0) return;
  MOE_REQUIRE(host != nullptr && dst.data != nullptr, "upload_index: null pointer");
  copy_to_device(dst.data, host, dst.size * 4, stream(s));
}

void CudaComputeBackend::upload_weights(const float* host, const WeightVec& dst, Stream s) {
  MOE_REQUIRE(dst.size >= 0, "upload_weights: negative size");
  if (dst.size == 0) return;
  MOE_REQUIRE(host != nullptr && dst.data != nullptr, "upload_weights: null pointer");
  copy_to_device(dst.data, host, dst.size * 4, stream(s));
}

void CudaComputeBackend::download_index(const IndexVec& src, int32_t* host, Stream s) {
  MOE_REQUIRE(src.size >= 0 && (src.size == 0 || (host != nullptr && src.data != nullptr)), "download_index: bad operands");
  if (src.size == 0) return;
  wait_stream(s);  // the pageable copy would block the host; this wait polls NCCL errors instead
  MOE_CUDA_CHECK(cudaMemcpyAsync(host, src.data, static_cast<size_t>(src.size) * 4, cudaMemcpyDeviceToHost, stream(s)));
}

void CudaComputeBackend::download_weights(const WeightVec& src, float* host, Stream s) {
  MOE_REQUIRE(src.size >= 0 && (src.size == 0 || (host != nullptr && src.data != nullptr)), "download_weights: bad operands");
  if (src.size == 0) return;
  wait_stream(s);
  MOE_CUDA_CHECK(cudaMemcpyAsync(host, src.data, static_cast<size_t>(src.size) * 4, cudaMemcpyDeviceToHost, stream(s)));
}

void CudaComputeBackend::gate_top_k(const Mat& logits, const std::vector<double>& multipliers, int top_k,
                                    bool renormalize, const IndexVec& experts, const WeightVec& weights, Stream s) {
  require_ok(cuda::check_mat(logits, dtype_, "gate logits"));
  const int64_t E = logits.cols;
  MOE_REQUIRE(E > 0 && top_k >= 1 && top_k <= E && int64_t(multipliers.size()) == E,
              "gate_top_k: need 1 <= top_k <= experts and one multiplier per expert");
  MOE_REQUIRE(experts.size >= logits.rows * top_k && weights.size >= logits.rows * top_k,
              "gate_top_k: outputs smaller than rows x top_k");
  if (logits.rows == 0) return;
  if (gate_multipliers_.bytes() < E * 8) gate_multipliers_ = alloc_bytes(E * 8);
  if (gate_probs_.bytes() < logits.elements() * 4) {
    synchronize_all();  // no queued gate may still use the old scratch
    gate_probs_ = DeviceBuffer{};
    gate_probs_ = alloc_bytes(logits.elements() * 4);
  }
  cudaStream_t st = stream(s);
  copy_to_device(gate_multipliers_.data(), multipliers.data(), E * 8, st);
  cuda::launch_gate_top_k(logits.data, dtype_, logits.rows, static_cast<int>(E),
                          static_cast<const double*>(gate_multipliers_.data()), top_k, renormalize,
                          static_cast<float*>(gate_probs_.data()), experts.data, weights.data, st);
}

// ---- kernels ----

void CudaComputeBackend::gemm(const Mat& a, const Mat& b, const Mat& c, bool accumulate, Stream s) {
  require_ok(cuda::check_mat(a, dtype_, "gemm a"));
  require_ok(cuda::check_mat(b, dtype_, "gemm b"));
  require_ok(cuda::check_mat(c, dtype_, "gemm c"));
  require_ok(cuda::check_gemm(a, b, c));
  const int64_t m = a.rows, n = b.cols, k = a.cols;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) zero(c, s);
    return;
  }
  // Row-major C = A B issued as column-major C^T = B^T A^T (see row_major_gemm).
  const cuda::ColumnMajorGemm g = cuda::row_major_gemm(m, n, k);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cudaDataType_t type = cuda::cuda_data_type(dtype_);
  MOE_CUBLAS_CHECK(cublasGemmEx(blas(s), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(g.m), static_cast<int>(g.n),
                                static_cast<int>(g.k), &alpha, b.data, type, static_cast<int>(g.lda), a.data, type,
                                static_cast<int>(g.ldb), &beta, c.data, type, static_cast<int>(g.ldc),
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  flops_ += 2 * m * n * k;
}

// Products of different shapes (one per local expert) in one cublasGemmGroupedBatchedEx call: one
// group per product, each issued as the column-major transpose like gemm(). Operand pointers go to
// the device through the pinned ring; the shape arrays stay on the host.
void CudaComputeBackend::grouped_gemm(const std::vector<GemmProblem>& problems, bool accumulate, Stream s) {
  std::vector<const GemmProblem*> live;
  for (const GemmProblem& p : problems) {
    require_ok(cuda::check_mat(p.a, dtype_, "grouped_gemm a"));
    require_ok(cuda::check_mat(p.b, dtype_, "grouped_gemm b"));
    require_ok(cuda::check_mat(p.c, dtype_, "grouped_gemm c"));
    require_ok(cuda::check_gemm(p.a, p.b, p.c));
    if (p.a.rows == 0 || p.b.cols == 0) continue;
    if (p.a.cols == 0) {
      if (!accumulate) zero(p.c, s);
      continue;
    }
    live.push_back(&p);
  }
  if (live.size() == 1) return gemm(live[0]->a, live[0]->b, live[0]->c, accumulate, s);
  const cudaDataType_t type = cuda::cuda_data_type(dtype_);
  for (size_t first = 0; first < live.size(); first += size_t(cuda::kMaxGemmBatch)) {
    const int count = static_cast<int>(std::min<size_t>(live.size() - first, size_t(cuda::kMaxGemmBatch)));
    std::vector<cublasOperation_t> op(count, CUBLAS_OP_N);
    std::vector<int> m(count), n(count), k(count), lda(count), ldb(count), ldc(count), group_size(count, 1);
    std::vector<float> alpha(count, 1.0f), beta(count, accumulate ? 1.0f : 0.0f);
    std::vector<const void*> pointers(3 * size_t(count));
    for (int i = 0; i < count; ++i) {
      const GemmProblem& p = *live[first + i];
      const cuda::ColumnMajorGemm g = cuda::row_major_gemm(p.a.rows, p.b.cols, p.a.cols);
      m[i] = static_cast<int>(g.m), n[i] = static_cast<int>(g.n), k[i] = static_cast<int>(g.k);
      lda[i] = static_cast<int>(g.lda), ldb[i] = static_cast<int>(g.ldb), ldc[i] = static_cast<int>(g.ldc);
      pointers[i] = p.b.data;              // cuBLAS's first operand: B (see row_major_gemm)
      pointers[count + i] = p.a.data;
      pointers[2 * size_t(count) + i] = p.c.data;
      flops_ += 2 * p.a.rows * p.b.cols * p.a.cols;
    }
    DeviceBuffer& dev = grouped_pointers_[static_cast<int>(s)];
    const int64_t bytes = int64_t(pointers.size() * sizeof(void*));
    if (dev.bytes() < bytes) {
      synchronize(s);  // no queued call on this stream may still read the old array
      dev = DeviceBuffer{};
      dev = alloc_bytes(bytes);
    }
    copy_to_device(dev.data(), pointers.data(), bytes, stream(s));
    auto** dp = static_cast<const void**>(dev.data());
    MOE_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(blas(s), op.data(), op.data(), m.data(), n.data(), k.data(), alpha.data(),
                                                dp, type, lda.data(), dp + count, type, ldb.data(), beta.data(),
                                                const_cast<void* const*>(reinterpret_cast<const void* const*>(dp + 2 * count)),
                                                type, ldc.data(), count, group_size.data(), CUBLAS_COMPUTE_32F));
  }
}

void CudaComputeBackend::rms_norm(const Mat& x, const Mat& y, Stream s) {
  require_ok(cuda::check_mat(x, dtype_, "rms_norm x"));
  require_ok(cuda::check_mat(y, dtype_, "rms_norm y"));
  require_ok(cuda::check_same_shape(x, y, "rms_norm"));
  require_ok(cuda::check_alias_or_disjoint(x, y, "rms_norm"));
  cuda::launch_rms_norm(x.data, y.data, dtype_, x.rows, x.cols, kRmsEps, stream(s));
}

void CudaComputeBackend::silu(const Mat& x, Stream s) {
  require_ok(cuda::check_mat(x, dtype_, "silu x"));
  cuda::launch_silu(x.data, dtype_, x.elements(), stream(s));
}

void CudaComputeBackend::add(const Mat& y, const Mat& x, Stream s) {
  require_ok(cuda::check_mat(y, dtype_, "add y"));
  require_ok(cuda::check_mat(x, dtype_, "add x"));
  require_ok(cuda::check_same_shape(y, x, "add"));
  require_ok(cuda::check_alias_or_disjoint(x, y, "add"));
  cuda::launch_add(y.data, x.data, dtype_, y.elements(), stream(s));
}

void CudaComputeBackend::copy(const Mat& src, const Mat& dst, Stream s) {
  require_ok(cuda::check_mat(src, dtype_, "copy src"));
  require_ok(cuda::check_mat(dst, dtype_, "copy dst"));
  require_ok(cuda::check_same_shape(src, dst, "copy"));
  if (src.elements() == 0 || src.data == dst.data) return;
  MOE_REQUIRE(!cuda::ranges_overlap(src.data, src.bytes(), dst.data, dst.bytes()), "copy: operands partially overlap");
  MOE_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, static_cast<size_t>(src.bytes()), cudaMemcpyDeviceToDevice, stream(s)));
}

void CudaComputeBackend::zero(const Mat& x, Stream s) {
  require_ok(cuda::check_mat(x, dtype_, "zero x"));
  if (x.elements() == 0) return;
  MOE_CUDA_CHECK(cudaMemsetAsync(x.data, 0, static_cast<size_t>(x.bytes()), stream(s)));
}

void CudaComputeBackend::gather_rows(const Mat& src, const IndexVec& index, const Mat& dst, Stream s) {
  require_ok(cuda::check_mat(src, dtype_, "gather_rows src"));
  require_ok(cuda::check_mat(dst, dtype_, "gather_rows dst"));
  require_ok(cuda::check_gather(src, index, dst));
  cuda::launch_gather_rows(src.data, src.rows, index.data, dst.data, dst.rows, dst.cols, dtype_, error_word_device_,
                           stream(s));
}

void CudaComputeBackend::weighted_combine(const Mat& src, const IndexVec& slot, const WeightVec& weight, int k,
                                          const Mat& dst, bool accumulate, Stream s) {
  require_ok(cuda::check_mat(src, dtype_, "weighted_combine src"));
  require_ok(cuda::check_mat(dst, dtype_, "weighted_combine dst"));
  require_ok(cuda::check_combine(src, slot, weight, k, dst));
  cuda::launch_weighted_combine(src.data, src.rows, slot.data, weight.data, k, dst.data, dst.rows, dst.cols, accumulate,
                                dtype_, error_word_device_, stream(s));
}

// Writes `src` (num_seq blocks of new_len rows) at positions past_len.. of each sequence's cache
// block (max_len rows): one strided copy, or one per sequence when the stride exceeds the pitch
// limit (kv_append_as_one_copy). A source that already is that region is left alone.
void CudaComputeBackend::append_to_cache(const Mat& src, const Mat& cache, int num_seq, int past_len, int new_len,
                                         int max_len, cudaStream_t st) {
  const int64_t row_bytes = cache.cols * dtype_bytes(dtype_);
  char* dst = static_cast<char*>(cache.data) + int64_t(past_len) * row_bytes;
  if (src.data == dst && (num_seq == 1 || new_len == max_len)) return;
  MOE_REQUIRE(!cuda::ranges_overlap(src.data, src.bytes(), cache.data, cache.bytes()),
              "attention: new keys/values overlap the cache outside their destination rows");
  const int64_t seq_bytes = int64_t(new_len) * row_bytes, cache_seq_bytes = int64_t(max_len) * row_bytes;
  if (cuda::kv_append_as_one_copy(max_len, row_bytes)) {
    MOE_CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<size_t>(cache_seq_bytes), src.data, static_cast<size_t>(seq_bytes),
                                     static_cast<size_t>(seq_bytes), static_cast<size_t>(num_seq),
                                     cudaMemcpyDeviceToDevice, st));
    return;
  }
  for (int q = 0; q < num_seq; ++q)
    MOE_CUDA_CHECK(cudaMemcpyAsync(dst + q * cache_seq_bytes, static_cast<const char*>(src.data) + q * seq_bytes,
                                   static_cast<size_t>(seq_bytes), cudaMemcpyDeviceToDevice, st));
}

void CudaComputeBackend::attention(const Mat& q, const Mat& k_new, const Mat& v_new, const Mat& k_cache,
                                   const Mat& v_cache, int num_seq, int past_len, int new_len, int max_len, int heads,
                                   int head_dim, const Mat& out, Stream s) {
  const Mat* operands[] = {&q, &k_new, &v_new, &k_cache, &v_cache, &out};
  const char* names[] = {"attention q", "attention k_new", "attention v_new", "attention k_cache", "attention v_cache",
                         "attention out"};
  for (int i = 0; i < 6; ++i) require_ok(cuda::check_mat(*operands[i], dtype_, names[i]));
  cuda::AttentionGeometry g;
  g.num_seq = num_seq;
  g.past_len = past_len;
  g.new_len = new_len;
  g.max_len = max_len;
  g.heads = heads;
  g.head_dim = head_dim;
  require_ok(cuda::check_attention(q, k_new, v_new, k_cache, v_cache, g, out));
  if (num_seq == 0 || new_len == 0) return;
  cudaStream_t st = stream(s);
  append_to_cache(k_new, k_cache, num_seq, past_len, new_len, max_len, st);
  append_to_cache(v_new, v_cache, num_seq, past_len, new_len, max_len, st);
  cuda::AttentionLaunch launch;
  launch.geometry = g;
  launch.q = q.data;
  launch.k_cache = k_cache.data;
  launch.v_cache = v_cache.data;
  launch.out = out.data;
  launch.dtype = dtype_;
  launch.workspace = attention_.data;
  launch.workspace_bytes = attention_.bytes;
  acquire(attention_, s);
  cuda::launch_attention(launch, blas(s), st);
  release(attention_, s);
  flops_ += cuda::attention_flops(g);
}

// ---- ordering, timing, errors ----

Event CudaComputeBackend::record(Stream s) {
  if (next_event_ == static_cast<int>(events_.size())) {
    cudaEvent_t e = nullptr;  // the pool grows to the most events one step needs, then stays
    MOE_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  MOE_CUDA_CHECK(cudaEventRecord(events_[next_event_], stream(s)));
  return Event{next_event_++};
}

cudaEvent_t CudaComputeBackend::event(Event e, const char* what) const {
  MOE_REQUIRE(e.id >= 0 && e.id < next_event_, std::string(what) + ": unknown or recycled event " + std::to_string(e.id));
  return events_[e.id];
}

void CudaComputeBackend::wait(Stream waiter, Event e) {
  MOE_CUDA_CHECK(cudaStreamWaitEvent(stream(waiter), event(e, "wait"), 0));
}

double CudaComputeBackend::elapsed_ms(Event start, Event end) {
  float ms = 0.0f;
  const cudaError_t rc = cudaEventElapsedTime(&ms, event(start, "elapsed_ms"), event(end, "elapsed_ms"));
  if (rc == cudaErrorNotReady) {
    clear_not_ready();
    throw Error("elapsed_ms: an event has not completed yet (synchronize its stream first)");
  }
  MOE_CUDA_CHECK(rc);
  return ms;
}

// Waits for stream `s`. With communicators registered (or a timeout), polls instead of blocking so
// that an NCCL failure of a peer ends the job (the polls call abort_job) rather than an endless
// wait; polls back off (poll_pause) so a long wait does not occupy a core. A wait past
// run.timeout_s ends the job the same way: every communicator aborted, then MPI_Abort.
void CudaComputeBackend::wait_stream(Stream s) {
  BlockingWait wait(BlockingWait::DeviceStream{});  // bounded by run.timeout_s
  cudaStream_t st = stream(s);
  if (polls_.empty() && options_.sync_timeout_s <= 0) {
    MOE_CUDA_CHECK(cudaStreamSynchronize(st));
    return;
  }
  cudaError_t failure = cudaSuccess;
  const Deadline deadline = Deadline::from_now(options_.sync_timeout_s);
  const WaitResult r = poll_until(deadline, [&] {
    const cudaError_t rc = cudaStreamQuery(st);
    if (rc == cudaSuccess) return PollState::done;
    if (rc != cudaErrorNotReady) {
      failure = rc;
      return PollState::failed;
    }
    for (auto& poll : polls_) poll.second();
    return PollState::pending;
  });
  if (r == WaitResult::failed) throw_cuda_error(failure, "cudaStreamQuery(stream)", __FILE__, __LINE__);
  if (r == WaitResult::expired)
    watchdog::abort_job("[rank " + std::to_string(watchdog::world_rank()) + "] timeout after " +
                            std::to_string(deadline.limit_s()) + " s (run.timeout_s) waiting for device stream " +
                            std::to_string(static_cast<int>(s)) + " in " + describe_activity() +
                            "; every communicator aborted (a peer may be stuck)",
                        1);
  clear_not_ready();
}

void CudaComputeBackend::check_device_errors() {
  volatile cuda::DeviceErrorWord* w = error_word_host_;
  const int code = w->code;
  if (code == cuda::kNoDeviceError) return;
  const int value = w->value;
  const long long bound = w->bound;
  w->code = cuda::kNoDeviceError;
  const char* op = code == cuda::kBadGatherIndex ? "gather_rows index" : "weighted_combine slot";
  throw Error(std::string("cuda backend: ") + op + " " + std::to_string(value) + " outside the " + std::to_string(bound) +
              " source rows (detected on the device)");
}

void CudaComputeBackend::synchronize(Stream s) {
  wait_stream(s);
  check_device_errors();
}

void CudaComputeBackend::synchronize_all() {
  for (int i = 0; i < kNumStreams; ++i) wait_stream(static_cast<Stream>(i));
  check_device_errors();
}

int CudaComputeBackend::add_sync_poll(std::function<void()> poll) {
  polls_[next_poll_id_] = std::move(poll);
  return next_poll_id_++;
}

void CudaComputeBackend::remove_sync_poll(int id) { polls_.erase(id); }

void CudaComputeBackend::range_push(const char* name) {
#ifdef MOE_HAVE_NVTX
  nvtxRangePushA(name);
#else
  (void)name;
#endif
}

void CudaComputeBackend::range_pop() {
#ifdef MOE_HAVE_NVTX
  nvtxRangePop();
#endif
}

}  // namespace moe
