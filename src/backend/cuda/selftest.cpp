// CUDA backend self-test: runs each operation on the CUDA backend and on the CPU backend with the
// same inputs and compares (normwise relative error), plus checks that need no reference (device
// index errors, events, counters, control plane equality).
#include "backend/cuda/selftest.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_compute.hpp"
#include "backend/cpu/mpi_comm.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_compute.hpp"
#include "backend/cuda/cuda_factory.hpp"
#include "backend/cuda/nccl_comm.hpp"
#include "core/error.hpp"

namespace moe {
namespace {

constexpr double kFailed = 1e30;  // error value of an item that threw

struct Twin {  // the same matrix on both backends
  DeviceMat gpu, cpu;
};

class SelfTest {
 public:
  SelfTest(std::ostream& out, ComputeBackend& cpu, Comm& cpu_world)
      : out_(out), cpu_(cpu), cpu_world_(cpu_world), rng_(1234 + 7919 * cpu_world.rank()) {}

  // Runs every item for one dtype; returns the number of failed items (same on all ranks).
  int run(DType dtype, int device) {
    dtype_ = dtype;
    CudaBackendOptions opts;
    opts.sync_timeout_s = 120;  // tiny problems: a stuck peer ends the test instead of hanging it
    CudaComputeBackend gpu(dtype, device, opts);
    CudaBackendOptions tiny = opts;  // forces attention chunking and piecewise staging
    tiny.attention_workspace_bytes = 4096;
    tiny.staging_bytes = 4096;
    CudaComputeBackend gpu_tiny(dtype, device, tiny);
    const double tol = dtype == DType::f32 ? 1e-4 : 2e-2;
    failures_ = 0;
    local_items(gpu, tol);
    item("attention_chunked", tol, [&] { return attention_error(gpu_tiny, 3, 8, 8, 30, 32); });
    item("upload_download_pieces", tol, [&] { return roundtrip_error(gpu_tiny, 67, 45); });
    // Collectives only when every rank is healthy: a rank that already failed might never issue
    // its side of an NCCL operation.
    std::vector<double> bad{failures_ > 0 ? 1.0 : 0.0};
    cpu_world_.all_reduce_max_host(bad);
    if (bad[0] > 0) {
      if (cpu_world_.rank() == 0) out_ << "FAIL " << dtype_name(dtype) << "/collectives skipped after local failures\n";
      return failures_ + 1;
    }
    std::unique_ptr<NcclComm> world = NcclComm::world(gpu);
    collective_items(gpu, *world, tol);
    return failures_;
  }

 private:
  // ---- helpers ----
  std::vector<float> random(int64_t n, float scale = 1.0f) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = u(rng_);
    return v;
  }
  Twin twin(ComputeBackend& gpu, int64_t rows, int64_t cols, const std::vector<float>& host) {
    Twin t{gpu.alloc_mat(rows, cols), cpu_.alloc_mat(rows, cols)};
    gpu.upload(host.data(), t.gpu.view, Stream::compute);
    cpu_.upload(host.data(), t.cpu.view, Stream::compute);
    gpu.synchronize(Stream::compute);
    return t;
  }
  Twin twin_random(ComputeBackend& gpu, int64_t rows, int64_t cols) { return twin(gpu, rows, cols, random(rows * cols)); }
  static std::vector<float> read(ComputeBackend& b, const Mat& m) {
    std::vector<float> v(static_cast<size_t>(m.elements()));
    b.download(m, v.data(), Stream::compute);
    b.synchronize(Stream::compute);
    return v;
  }
  static double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
    if (got.size() != want.size()) return kFailed;
    double diff = 0, ref = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (!std::isfinite(got[i])) return kFailed;
      diff = std::max(diff, std::fabs(double(got[i]) - want[i]));
      ref = std::max(ref, std::fabs(double(want[i])));
    }
    return diff / std::max(ref, 1e-30);
  }
  double compare(ComputeBackend& gpu, const Twin& t) { return rel_err(read(gpu, t.gpu.view), read(cpu_, t.cpu.view)); }

  // Runs one item on every rank and reports the max error over ranks on rank 0.
  void item(const std::string& name, double tol, const std::function<double()>& fn) {
    const std::string full = std::string(dtype_name(dtype_)) + "/" + name;
    double err = kFailed;
    try {
      err = fn();
    } catch (const std::exception& e) {
      out_ << "[rank " << cpu_world_.rank() << "] " << full << ": " << e.what() << "\n";
    }
    std::vector<double> all{err};
    cpu_world_.all_reduce_max_host(all);
    const bool pass = all[0] <= tol;
    if (!pass) ++failures_;
    if (cpu_world_.rank() == 0) out_ << (pass ? "PASS " : "FAIL ") << full << " max_rel_err=" << all[0] << "\n";
  }

  // ---- local items ----
  double roundtrip_error(ComputeBackend& gpu, int64_t rows, int64_t cols) {
    const std::vector<float> host = random(rows * cols);
    DeviceMat m = gpu.alloc_mat(rows, cols);
    gpu.upload(host.data(), m.view, Stream::send);  // a non-compute stream, then read on compute
    gpu.synchronize(Stream::send);
    return rel_err(read(gpu, m.view), host);
  }

  double attention_error(ComputeBackend& gpu, int num_seq, int heads, int head_dim, int prompt, int max_len) {
    const int64_t hd = int64_t(heads) * head_dim;
    Twin kc = twin(gpu, int64_t(num_seq) * max_len, hd, std::vector<float>(size_t(num_seq) * max_len * hd, 0.0f));
    Twin vc = twin(gpu, int64_t(num_seq) * max_len, hd, std::vector<float>(size_t(num_seq) * max_len * hd, 0.0f));
    double err = 0;
    int past = 0;
    for (int new_len : {prompt, 1}) {  // prefill, then one decode step on the same caches
      const int64_t rows = int64_t(num_seq) * new_len;
      Twin q = twin_random(gpu, rows, hd), k = twin_random(gpu, rows, hd), v = twin_random(gpu, rows, hd);
      Twin o = twin_random(gpu, rows, hd);
      gpu.attention(q.gpu.view, k.gpu.view, v.gpu.view, kc.gpu.view, vc.gpu.view, num_seq, past, new_len, max_len, heads,
                    head_dim, o.gpu.view);
      cpu_.attention(q.cpu.view, k.cpu.view, v.cpu.view, kc.cpu.view, vc.cpu.view, num_seq, past, new_len, max_len, heads,
                     head_dim, o.cpu.view);
      err = std::max({err, compare(gpu, o), compare(gpu, kc), compare(gpu, vc)});
      past += new_len;
    }
    return err;
  }

  void local_items(ComputeBackend& gpu, double tol) {  // base type: default stream arguments
    gpu.reset_counters();
    cpu_.reset_counters();
    item("upload_download", tol, [&] { return roundtrip_error(gpu, 19, 33); });
    item("gemm", tol, [&] {
      Twin a = twin_random(gpu, 37, 61), b = twin_random(gpu, 61, 29), c = twin_random(gpu, 37, 29);
      gpu.gemm(a.gpu.view, b.gpu.view, c.gpu.view, false);
      cpu_.gemm(a.cpu.view, b.cpu.view, c.cpu.view, false);
      const double e0 = compare(gpu, c);
      gpu.gemm(a.gpu.view, b.gpu.view, c.gpu.view, true);  // accumulate onto the result
      cpu_.gemm(a.cpu.view, b.cpu.view, c.cpu.view, true);
      return std::max(e0, compare(gpu, c));
    });
    item("rms_norm", tol, [&] {
      Twin x = twin_random(gpu, 13, 1500), y = twin_random(gpu, 13, 1500);
      gpu.rms_norm(x.gpu.view, y.gpu.view);
      cpu_.rms_norm(x.cpu.view, y.cpu.view);
      const double e0 = compare(gpu, y);
      gpu.rms_norm(x.gpu.view, x.gpu.view);  // in place
      cpu_.rms_norm(x.cpu.view, x.cpu.view);
      return std::max(e0, compare(gpu, x));
    });
    item("silu", tol, [&] {
      Twin x = twin_random(gpu, 7, 300);
      gpu.silu(x.gpu.view);
      cpu_.silu(x.cpu.view);
      return compare(gpu, x);
    });
    item("add_copy_zero", tol, [&] {
      Twin x = twin_random(gpu, 9, 77), y = twin_random(gpu, 9, 77), z = twin_random(gpu, 9, 77);
      gpu.add(y.gpu.view, x.gpu.view);
      cpu_.add(y.cpu.view, x.cpu.view);
      gpu.copy(y.gpu.view, z.gpu.view);
      cpu_.copy(y.cpu.view, z.cpu.view);
      const double e = std::max(compare(gpu, y), compare(gpu, z));
      gpu.zero(x.gpu.view.slice_rows(2, 3));
      cpu_.zero(x.cpu.view.slice_rows(2, 3));
      return std::max(e, compare(gpu, x));
    });
    item("gather_rows", tol, [&] {
      Twin src = twin_random(gpu, 11, 130), dst = twin_random(gpu, 17, 130);
      std::vector<int32_t> idx(17);
      for (auto& i : idx) i = static_cast<int32_t>(rng_() % 11);  // repeats allowed
      DeviceIndex gi = gpu.alloc_index(17), ci = cpu_.alloc_index(17);
      gpu.upload_index(idx.data(), gi.view, Stream::compute);
      cpu_.upload_index(idx.data(), ci.view, Stream::compute);
      gpu.gather_rows(src.gpu.view, gi.view, dst.gpu.view);
      cpu_.gather_rows(src.cpu.view, ci.view, dst.cpu.view);
      return compare(gpu, dst);
    });
    item("weighted_combine", tol, [&] {
      const int k = 3, tokens = 10, src_rows = 14;
      Twin src = twin_random(gpu, src_rows, 90), dst = twin_random(gpu, tokens, 90);
      std::vector<int32_t> slot(tokens * k);
      for (auto& s : slot) s = static_cast<int32_t>(rng_() % (src_rows + 3)) - 3;  // some dropped (< 0)
      const std::vector<float> w = random(tokens * k);
      DeviceIndex gs = gpu.alloc_index(tokens * k), cs = cpu_.alloc_index(tokens * k);
      DeviceWeights gw = gpu.alloc_weights(tokens * k), cw = cpu_.alloc_weights(tokens * k);
      gpu.upload_index(slot.data(), gs.view, Stream::compute);
      cpu_.upload_index(slot.data(), cs.view, Stream::compute);
      gpu.upload_weights(w.data(), gw.view, Stream::compute);
      cpu_.upload_weights(w.data(), cw.view, Stream::compute);
      double e = 0;
      for (bool acc : {false, true}) {
        gpu.weighted_combine(src.gpu.view, gs.view, gw.view, k, dst.gpu.view, acc);
        cpu_.weighted_combine(src.cpu.view, cs.view, cw.view, k, dst.cpu.view, acc);
        e = std::max(e, compare(gpu, dst));
      }
      return e;
    });
    item("attention", tol, [&] { return attention_error(gpu, 3, 2, 16, 7, 12); });
    item("flops_counter", 0.0, [&] {
      return std::fabs(double(gpu.flops() - cpu_.flops())) / std::max<double>(1.0, double(cpu_.flops()));
    });
    item("bad_index_detected", 0.0, [&] {
      DeviceMat src = gpu.alloc_mat(4, 8), dst = gpu.alloc_mat(2, 8);
      DeviceIndex idx = gpu.alloc_index(2);
      const int32_t bad[2] = {1, 4};
      gpu.upload_index(bad, idx.view, Stream::compute);
      gpu.gather_rows(src.view, idx.view, dst.view);
      try {
        gpu.synchronize(Stream::compute);
      } catch (const Error&) {
        return 0.0;  // reported at synchronize, as designed
      }
      return 1.0;
    });
    item("events", 0.0, [&] {
      Twin a = twin_random(gpu, 64, 64);
      DeviceMat c = gpu.alloc_mat(64, 64);
      const Event e0 = gpu.record(Stream::compute);
      gpu.gemm(a.gpu.view, a.gpu.view, c.view, false);
      const Event e1 = gpu.record(Stream::compute);
      gpu.wait(Stream::recv, e1);
      gpu.synchronize_all();
      const double ms = gpu.elapsed_ms(e0, e1);
      gpu.reset_events();
      return std::isfinite(ms) && ms >= 0 ? 0.0 : 1.0;
    });
  }

  // ---- collectives (world and a split), against the MPI comm of the CPU backend ----
  void collective_items(CudaComputeBackend& gpu, NcclComm& world, double tol) {
    const int rank = world.rank(), size = world.size();
    const double sum_tol = tol * std::max(1.0, std::sqrt(double(size)));  // 16-bit sums round once per rank
    std::unique_ptr<Comm> cpu_world = make_mpi_world_comm(cpu_);
    item("all_reduce_sum", sum_tol, [&] {
      Twin x = twin_random(gpu, 21, 40);
      world.all_reduce_sum(x.gpu.view, Stream::send);
      cpu_world->all_reduce_sum(x.cpu.view, Stream::send);
      gpu.synchronize(Stream::send);
      return compare(gpu, x);
    });
    item("all_to_all_v", tol, [&] {
      // Rows rank r sends to p: (7r + 3p + 1) % 4, so each side can compute the other's counts.
      std::vector<int64_t> send_rows(size), recv_rows(size);
      int64_t ns = 0, nr = 0;
      for (int p = 0; p < size; ++p) {
        send_rows[p] = (7 * rank + 3 * p + 1) % 4;
        recv_rows[p] = (7 * p + 3 * rank + 1) % 4;
        ns += send_rows[p];
        nr += recv_rows[p];
      }
      Twin s = twin_random(gpu, ns + 1, 24), r = twin(gpu, nr + 1, 24, std::vector<float>((nr + 1) * 24, 0.0f));
      world.all_to_all_v(s.gpu.view, send_rows, r.gpu.view, recv_rows, Stream::recv);
      cpu_world->all_to_all_v(s.cpu.view, send_rows, r.cpu.view, recv_rows, Stream::recv);
      gpu.synchronize(Stream::recv);
      return compare(gpu, r);
    });
    item("send_recv", tol, [&] {
      // Pairs (0,1), (2,3), ...: the lower rank sends first, so no cycle of blocking sends forms.
      Twin x = twin_random(gpu, 5, 33);
      const int peer = rank ^ 1;
      if (peer < size) {
        if (rank < peer) {
          world.send(x.gpu.view, peer, Stream::send);
          cpu_world->send(x.cpu.view, peer, Stream::send);
          world.recv(x.gpu.view, peer, Stream::send);
          cpu_world->recv(x.cpu.view, peer, Stream::send);
        } else {
          Twin mine = twin(gpu, 5, 33, read(cpu_, x.cpu.view));
          world.recv(x.gpu.view, peer, Stream::send);
          cpu_world->recv(x.cpu.view, peer, Stream::send);
          world.send(mine.gpu.view, peer, Stream::send);
          cpu_world->send(mine.cpu.view, peer, Stream::send);
        }
        gpu.synchronize(Stream::send);
      }
      return compare(gpu, x);
    });
    item("split_all_reduce", sum_tol, [&] {
      std::unique_ptr<Comm> sub = world.split(rank % 2, -rank);  // reversed order inside each half
      std::unique_ptr<Comm> csub = cpu_world->split(rank % 2, -rank);
      if (sub->rank() != csub->rank() || sub->size() != csub->size() || sub->world_rank_of(0) != csub->world_rank_of(0))
        return kFailed;
      Twin x = twin_random(gpu, 6, 50);
      sub->all_reduce_sum(x.gpu.view, Stream::compute);
      csub->all_reduce_sum(x.cpu.view, Stream::compute);
      gpu.synchronize(Stream::compute);
      return compare(gpu, x);
    });
    item("control_plane", 0.0, [&] {
      bool same = true;
      std::vector<int64_t> counts(size);
      for (int p = 0; p < size; ++p) counts[p] = 100 * rank + p;
      same &= world.all_to_all_counts(counts, 1) == cpu_world->all_to_all_counts(counts, 1);
      std::vector<int64_t> a{rank + 1, 2 * rank}, b = a;
      world.all_reduce_sum_host(a);
      cpu_world->all_reduce_sum_host(b);
      same &= a == b;
      std::vector<double> d{0.5 * rank, -1.0 * rank}, e = d, f = d, g = d;
      world.all_reduce_max_host(d);
      cpu_world->all_reduce_max_host(e);
      world.all_reduce_sum_host(f);
      cpu_world->all_reduce_sum_host(g);
      same &= d == e && f == g;
      same &= world.exclusive_scan_host({rank + 1, 3}) == cpu_world->exclusive_scan_host({rank + 1, 3});
      std::vector<float> v = rank == size - 1 ? std::vector<float>{1.5f, 2.5f, 3.5f} : std::vector<float>{}, w = v;
      world.broadcast_host(v, size - 1);
      cpu_world->broadcast_host(w, size - 1);
      same &= v == w && v.size() == 3;
      std::vector<float> mine(static_cast<size_t>(rank % 3), float(rank));
      same &= world.gather_host(mine, 0) == cpu_world->gather_host(mine, 0);
      world.barrier();
      return same ? 0.0 : 1.0;
    });
    if (dtype_ == DType::f32)  // fp32 moves the same bytes as the CPU data plane
      item("traffic_counters", 0.0, [&] {
        return world.traffic().bytes_to_rank == cpu_world->traffic().bytes_to_rank ? 0.0 : 1.0;
      });
  }

  std::ostream& out_;
  ComputeBackend& cpu_;
  Comm& cpu_world_;
  std::mt19937 rng_;
  DType dtype_ = DType::f32;
  int failures_ = 0;
};

}  // namespace

int run_cuda_selftest(std::ostream& out) {
  std::unique_ptr<ComputeBackend> cpu = make_cpu_compute();
  std::unique_ptr<Comm> cpu_world = make_mpi_world_comm(*cpu);
  const std::string problem = probe_cuda_devices();
  if (!problem.empty()) {
    if (cpu_world->rank() == 0) out << "selftest: no CUDA device: " << problem << "\n";
    return 2;
  }
  int device = 0;
  MOE_CUDA_CHECK(cudaGetDevice(&device));
  SelfTest test(out, *cpu, *cpu_world);
  int failures = 0;
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) failures += test.run(dtype, device);
  if (cpu_world->rank() == 0) out << "selftest: " << (failures == 0 ? "all passed" : std::to_string(failures) + " failed") << "\n";
  return failures == 0 ? 0 : 1;
}

}  // namespace moe
