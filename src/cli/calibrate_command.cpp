// `moe-bench calibrate` (under mpirun): measures this machine through the CPU backend and MPI on the
// model's shapes, with every rank busy at once (so shared cores are part of the rates), and writes a
// hardware profile: kernel rates fitted to the cost model's FLOPs/bytes, host costs, MPI alpha/beta.
#include "cli/calibrate_command.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include <sched.h>

#include "backend/factory.hpp"
#include "core/atomic_file.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "cost/cost_model.hpp"
#include "routing/dispatch_plan.hpp"
#include "routing/router.hpp"
#include "sim/hardware.hpp"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

struct CalibrateArgs {
  std::string config_path;
  std::string out_path;
  double budget_ms = 30;   // per measurement and trial
};

struct Shapes {
  int64_t d = 256, f = 1024, E = 16, k = 2, H = 8, D = 32;
  int64_t seqs = 2, prompt = 32;   // sequences per rank, prompt length
};

Shapes shapes_of(const Config& c, int ranks) {
  Shapes s;
  s.d = c.model.hidden;
  s.f = c.model.ffn_hidden;
  s.E = c.model.experts;
  s.k = c.model.top_k;
  s.H = std::max(1, c.model.heads);
  s.D = std::max(1, c.model.head_dim);
  s.seqs = std::max(1, c.workload.batch_sequences / ranks);
  s.prompt = c.workload.prompt_tokens;
  return s;
}

// Milliseconds per call of `fn` on the ranks with `active` set while they all run their own loop:
// barrier, an untimed call, then enough calls (the same on every rank) to fill `budget_ms`; the
// median of three trials, mean over the active ranks. Inactive ranks only join the barriers.
double time_ms(Comm& world, double budget_ms, const std::function<void()>& fn, bool active = true) {
  world.barrier();
  if (active) fn();
  auto t0 = Clock::now();
  if (active) fn();
  std::vector<double> slowest{active ? std::max(1e-4, std::chrono::duration<double, std::milli>(Clock::now() - t0).count()) : 0};
  world.all_reduce_max_host(slowest);  // every rank runs the same count (collectives inside `fn`)
  const double once = slowest[0];
  const int reps = static_cast<int>(std::clamp(budget_ms / once, 1.0, 2000.0));
  std::vector<double> trials;
  for (int t = 0; t < 3; ++t) {
    world.barrier();
    t0 = Clock::now();
    for (int i = 0; active && i < reps; ++i) fn();
    trials.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / reps);
  }
  std::sort(trials.begin(), trials.end());
  std::vector<double> v{active ? trials[1] : 0.0, active ? 1.0 : 0.0};
  world.all_reduce_sum_host(v);
  return v[0] / std::max(1.0, v[1]);
}

// Cores this process may run on (all ranks of a single-host job share them).
int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

struct Sample {
  double flops, bytes, ms;
};

// Fit ms = overhead + max(flops / R, bytes / B) (R in FLOP/ms, B in bytes/ms) by a log-grid search
// minimising the squared log error; returns {R, B, rms relative error}.
std::array<double, 3> fit_roofline(const std::vector<Sample>& s, double overhead_ms) {
  double r0 = 0, b0 = 0;
  for (const Sample& x : s) {
    r0 = std::max(r0, x.flops / std::max(1e-9, x.ms - overhead_ms));
    b0 = std::max(b0, x.bytes / std::max(1e-9, x.ms - overhead_ms));
  }
  double best = 1e300, br = r0, bb = b0;
  for (int i = 0; i <= 80; ++i)
    for (int j = 0; j <= 80; ++j) {
      const double r = r0 * std::pow(10.0, -2.0 * i / 80), b = b0 * std::pow(10.0, -2.0 * j / 80);
      double err = 0;
      for (const Sample& x : s) {
        const double pred = overhead_ms + std::max(x.flops / r, x.bytes / b);
        err += std::pow(std::log(pred / x.ms), 2);
      }
      if (err < best) {
        best = err;
        br = r;
        bb = b;
      }
    }
  return {br, bb, std::sqrt(best / std::max<size_t>(1, s.size()))};
}

// alpha (ms) and bytes/ms of ms = alpha + bytes / beta by least squares over the samples.
std::pair<double, double> fit_line(const std::vector<std::pair<double, double>>& xy) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = double(xy.size());
  for (auto [x, y] : xy) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double slope = (n * sxy - sx * sy) / std::max(1e-30, n * sxx - sx * sx);
  const double alpha = std::max(0.0, (sy - slope * sx) / n);
  return {alpha, slope > 0 ? 1.0 / slope : 1e30};
}

// A matrix with data written into every page: freshly allocated zero pages all map to one physical
// page, which would make "memory" reads cache hits.
DeviceMat filled(ComputeBackend& cpu, int64_t rows, int64_t cols) {
  DeviceMat m = cpu.alloc_mat(rows, cols);
  std::vector<float> host(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < host.size(); ++i) host[i] = 1e-3f * float(i % 97) - 0.05f;
  cpu.upload(host.data(), m.view, Stream::compute);
  return m;
}

// Matrices [rows x cols] totalling at least kColdBytes (above a server's last-level cache).
constexpr int64_t kColdBytes = int64_t(96) << 20;
std::vector<DeviceMat> cold_pool(ComputeBackend& cpu, int64_t rows, int64_t cols) {
  const int64_t count = std::clamp<int64_t>(kColdBytes / std::max<int64_t>(1, rows * cols * 4) + 1, 2, 512);
  std::vector<DeviceMat> pool;
  for (int64_t i = 0; i < count; ++i) pool.push_back(filled(cpu, rows, cols));
  return pool;
}

// What every measurement of one calibration shares: the CPU backend, the world, the shapes and
// the time budget. Compute rates are per core: with more ranks than cores only `cores` ranks
// measure at once (`computing`), and the profile's shared_cores lets the time model share the
// cores among the ranks of a step.
struct Calibration {
  ComputeBackend& cpu;
  Comm& world;
  Shapes s;
  double budget = 0;
  int cores = 1;
  bool computing = true;
  static constexpr int eb = 4;   // fp32

  double compute_ms(const std::function<void()>& fn) const { return time_ms(world, budget, fn, computing); }
};

// GEMMs on every [k x n] the strategies use (whole and tp-sharded weights), m from 1 to a whole
// prefill in powers of two: the table the time model interpolates, and a roofline fit of it.
void measure_gemm(const Calibration& cal, const Config& c, HardwareProfile& p, nlohmann::ordered_json& report) {
  ComputeBackend& cpu = cal.cpu;
  const int n = cal.world.size();
  const Shapes& s = cal.s;
  const int eb = cal.eb;
  auto compute_ms = [&](const std::function<void()>& fn) { return cal.compute_ms(fn); };
  std::vector<Sample> g;
  std::vector<std::pair<int64_t, int64_t>> kn = {{s.d, s.f}, {s.f, s.d}, {s.d, s.H * s.D}, {s.H * s.D, s.d}, {s.d, s.E}};
  for (const StrategyConfig& st : c.strategies)
    if (st.kind == "tp_pp" && st.tp > 1)
      for (auto x : std::vector<std::pair<int64_t, int64_t>>{
               {s.d, s.f / st.tp}, {s.f / st.tp, s.d}, {s.d, s.H * s.D / st.tp}, {s.H * s.D / st.tp, s.d}})
        kn.push_back(x);
  std::sort(kn.begin(), kn.end());
  kn.erase(std::unique(kn.begin(), kn.end()), kn.end());
  const int64_t max_rows = std::min<int64_t>(4096, std::max<int64_t>(64, s.seqs * n * s.prompt));
  for (auto [k, nn] : kn) {
    if (k < 1 || nn < 1) continue;
    // Weights come from memory in a real step (every expert and layer once): cycle through a pool
    // larger than the last-level cache so each call reads its B cold.
    const auto pool = cold_pool(cpu, k, nn);
    size_t next = 0;
    for (int64_t m = 1; m <= max_rows; m *= 2) {
      DeviceMat A = filled(cpu, m, k), C = filled(cpu, m, nn);
      const Kernel kk = gemm_kernel(double(m), k, nn, eb);
      g.push_back({kk.flops, kk.bytes, compute_ms([&] {
                     cpu.gemm(A.view, pool[next].view, C.view, false);
                     next = (next + 1) % pool.size();
                   })});
      p.gemm_table.push_back({double(m), double(k), double(nn), g.back().ms});
    }
  }
  const auto gf = fit_roofline(g, p.kernel_overhead_us * 1e-3);
  p.peak_tflops = gf[0] / 1e9;
  KernelRate& gr = p.kernels[static_cast<int>(KernelKind::gemm)];
  gr.tflops = gf[0] / 1e9;
  gr.gb_s = gf[1] / 1e6;
  report["gemm"] = {{"roofline_fit_rms_rel_error", gf[2]}, {"table_entries", p.gemm_table.size()}};
}

// Attention: prefill (new_len = prompt) and decode (new_len = 1 after the prompt) shapes.
void measure_attention(const Calibration& cal, HardwareProfile& p, nlohmann::ordered_json& report) {
  ComputeBackend& cpu = cal.cpu;
  const Shapes& s = cal.s;
  const int eb = cal.eb;
  auto compute_ms = [&](const std::function<void()>& fn) { return cal.compute_ms(fn); };
  const int max_len = static_cast<int>(s.prompt + 1);
  const int64_t hd = s.H * s.D;
  const auto kc = cold_pool(cpu, s.seqs * max_len, hd), vc = cold_pool(cpu, s.seqs * max_len, hd);  // KV caches of many layers
  size_t next = 0;
  std::vector<Sample> at;
  for (int new_len : {static_cast<int>(s.prompt), 1}) {
    const int past = new_len == 1 ? static_cast<int>(s.prompt) : 0;
    DeviceMat q = filled(cpu, s.seqs * new_len, hd), o = filled(cpu, s.seqs * new_len, hd);
    const Kernel kk = attention_kernel(s.seqs, s.H, s.D, new_len, past, eb);
    at.push_back({kk.flops, kk.bytes, compute_ms([&] {
                    cpu.attention(q.view, q.view, q.view, kc[next].view, vc[next].view, static_cast<int>(s.seqs), past,
                                  new_len, max_len, static_cast<int>(s.H), static_cast<int>(s.D), o.view);
                    next = (next + 1) % kc.size();
                  })});
  }
  const auto af = fit_roofline(at, p.kernel_overhead_us * 1e-3);
  p.kernels[static_cast<int>(KernelKind::attention)] = {af[0] / 1e9, af[1] / 1e6, 0};
  report["attention"] = {{"rms_rel_error", af[2]}};
}

// Memory-bound kernels at the prefill size (bytes as the cost model counts them).
void measure_memory_kernels(const Calibration& cal, HardwareProfile& p) {
  ComputeBackend& cpu = cal.cpu;
  const Shapes& s = cal.s;
  const int eb = cal.eb;
  auto compute_ms = [&](const std::function<void()>& fn) { return cal.compute_ms(fn); };
  const int64_t rows = std::max<int64_t>(1, s.seqs * s.prompt), arows = rows * s.k;
  DeviceMat x = filled(cpu, arows, s.d), y = filled(cpu, arows, s.d), h = filled(cpu, arows, s.f);
  DeviceIndex idx = cpu.alloc_index(arows);
  std::vector<int32_t> hidx(arows);
  std::mt19937 rng(1);
  for (auto& v : hidx) v = static_cast<int32_t>(rng() % rows);
  cpu.upload_index(hidx.data(), idx.view, Stream::compute);
  DeviceWeights w = cpu.alloc_weights(arows);
  const Mat xr = x.slice_rows(0, rows), yr = y.slice_rows(0, rows);
  const double o = p.kernel_overhead_us * 1e-3;
  auto rate = [&](KernelKind kind, double bytes, const std::function<void()>& fn) {
    const double ms = compute_ms(fn);
    p.kernels[static_cast<int>(kind)].gb_s = bytes / std::max(1e-6, ms - o) / 1e6;
  };
  const double rd = double(rows) * s.d * eb;
  rate(KernelKind::rms_norm, 2 * rd, [&] { cpu.rms_norm(xr, yr); });
  rate(KernelKind::add, 3 * rd, [&] { cpu.add(yr, xr); });
  rate(KernelKind::copy, 2 * rd, [&] { cpu.copy(xr, yr); });
  rate(KernelKind::gather, 2 * rd * s.k, [&] { cpu.gather_rows(xr, idx.view, y.view); });
  rate(KernelKind::combine, rd * s.k + rd, [&] { cpu.weighted_combine(x.view, idx.view, w.view, int(s.k), yr, false); });
  rate(KernelKind::silu, 2.0 * arows * s.f * eb, [&] { cpu.silu(h.view); });
  std::vector<float> host(static_cast<size_t>(arows * s.d));
  rate(KernelKind::upload, double(arows) * s.d * eb, [&] { cpu.upload(host.data(), x.view, Stream::compute); });
  rate(KernelKind::download, double(arows) * s.d * eb, [&] { cpu.download(x.view, host.data(), Stream::compute); });
}

// Host routing at the prefill size: softmax + top-k per logit, and plan building per assignment.
void measure_host_routing(const Calibration& cal, HardwareProfile& p) {
  const Shapes& s = cal.s;
  auto compute_ms = [&](const std::function<void()>& fn) { return cal.compute_ms(fn); };
  const int64_t rows = std::max<int64_t>(1, s.seqs * s.prompt), arows = rows * s.k;
  std::mt19937 rng(1);
  for (int64_t i = 0; i < arows; ++i) rng();  // the same logits as ever: the gather indices drew first
  std::vector<float> logits(static_cast<size_t>(rows * s.E));
  for (auto& v : logits) v = float(rng() % 1000) / 1000.0f;
  const std::vector<double> mult(s.E, 1.0);
  double ms = compute_ms([&] {
    std::vector<float> l = logits;
    softmax_rows(l, int(rows), int(s.E));
    route_top_k(l, int(rows), int(s.E), int(s.k), mult, true);
  });
  p.kernels[static_cast<int>(KernelKind::host_route)].ns_per_item = ms * 1e6 / double(rows * s.E);
  const Routing r = route_top_k(logits, int(rows), int(s.E), int(s.k), mult, true);
  ms = compute_ms([&] { make_local_plan(r, int(s.E)); });
  p.kernels[static_cast<int>(KernelKind::host_plan)].ns_per_item = ms * 1e6 / double(arows);
}

// Memory bandwidth (STREAM-like copy of 64 MB), informational: every kernel has its own rate.
void measure_memory_bandwidth(const Calibration& cal, HardwareProfile& p) {
  ComputeBackend& cpu = cal.cpu;
  const int eb = cal.eb;
  auto compute_ms = [&](const std::function<void()>& fn) { return cal.compute_ms(fn); };
  const int64_t cols = 1 << 14, rows = 1024;
  DeviceMat src = filled(cpu, rows, cols), dst = filled(cpu, rows, cols);
  const double ms = compute_ms([&] { cpu.copy(src.view, dst.view); });
  p.hbm_gb_s = 2.0 * rows * cols * eb / ms / 1e6;
}

// MPI: p2p ping-pong between ranks 0 and 1, all-to-all and all-reduce at a few sizes.
void measure_mpi(const Calibration& cal, HardwareProfile& p, nlohmann::ordered_json& report) {
  ComputeBackend& cpu = cal.cpu;
  Comm& world = cal.world;
  const Shapes& s = cal.s;
  const int eb = cal.eb;
  const int n = world.size();
  const double budget = cal.budget;
  std::vector<std::pair<double, double>> p2p, a2a, ar;
  for (int64_t r : {int64_t(1), int64_t(64), int64_t(1024)}) {
    DeviceMat m = filled(cpu, r, s.d);
    const int me = world.rank();
    const double rt = time_ms(world, budget, [&] {
      if (me == 0) {
        world.send(m.view, 1, Stream::compute);
        world.recv(m.view, 1, Stream::compute);
      } else if (me == 1) {
        world.recv(m.view, 0, Stream::compute);
        world.send(m.view, 0, Stream::compute);
      }
    }, me < 2);
    p2p.push_back({double(m.view.bytes()), rt / 2});  // one way of the round trip
    DeviceMat send = filled(cpu, r * n, s.d), recv = filled(cpu, r * n, s.d);
    const std::vector<int64_t> rows(n, r);
    a2a.push_back({double(r * (n - 1) * s.d * eb), time_ms(world, budget, [&] {
                     world.all_to_all_v(send.view, rows, recv.view, rows, Stream::compute);
                   })});
    DeviceMat buf = filled(cpu, r * 8, s.d);
    ar.push_back({double(buf.view.bytes()), time_ms(world, budget, [&] { world.all_reduce_sum(buf.view, Stream::compute); })});
  }
  const auto [p2p_alpha, p2p_beta] = fit_line(p2p);
  const auto [a2a_alpha, a2a_beta] = fit_line(a2a);
  const auto [ar_alpha, ar_beta] = fit_line(ar);
  for (LinkProfile* l : {&p.intra_node, &p.inter_node}) {
    l->bandwidth_gb_s = a2a_beta / 1e6;
    l->efficiency = 1;
    l->latency_us = std::max(0.1, p2p_alpha * 1e3);  // a fit may put the intercept at 0
  }
  p.alltoall_per_peer_us = std::max(0.0, (a2a_alpha - p2p_alpha) * 1e3 / (n - 1));
  p.collective_hop_us = std::max(0.0, (ar_alpha - p2p_alpha) * 1e3 / (2 * std::ceil(std::log2(double(n)))));
  p.allreduce_gb_s = 2.0 * (n - 1) / n * ar_beta / 1e6;
  report["mpi"] = {{"p2p_alpha_us", p2p_alpha * 1e3}, {"p2p_gb_s", p2p_beta / 1e6}, {"alltoall_alpha_us", a2a_alpha * 1e3},
                   {"alltoall_port_gb_s", a2a_beta / 1e6}, {"allreduce_alpha_us", ar_alpha * 1e3},
                   {"allreduce_bus_gb_s", p.allreduce_gb_s}};
}

int run_calibrate(const CalibrateArgs& a, MpiSession& mpi) {
  Config c;
  if (!a.config_path.empty()) c = load_config_file(a.config_path);
  Backends b = make_backends("cpu", "fp32");
  Comm& world = *b.world;
  const int n = world.size();
  const int cores = available_cores();
  const Calibration cal{*b.compute, world, a.config_path.empty() ? Shapes{} : shapes_of(c, n), a.budget_ms, cores,
                        world.rank() < cores};
  nlohmann::ordered_json report;
  HardwareProfile p;
  p.name = "calibrated";
  p.description = "measured by moe-bench calibrate on " + std::to_string(n) + " ranks (CPU backend, fp32, MPI)";
  p.gpu_name = "CPU (OpenBLAS fp32)";
  p.gemm_efficiency = p.attention_efficiency = p.hbm_efficiency = 1;
  p.host_sync_us = 0;
  p.shared_cores = n > cores ? cores : 0;

  // Launch overhead: a one-element add.
  DeviceMat one = filled(cal.cpu, 1, 1);
  p.kernel_overhead_us = 1e3 * cal.compute_ms([&] { cal.cpu.add(one.view, one.view); });
  measure_gemm(cal, c, p, report);
  measure_attention(cal, p, report);
  measure_memory_kernels(cal, p);
  measure_host_routing(cal, p);
  measure_memory_bandwidth(cal, p);
  if (n > 1) measure_mpi(cal, p, report);
  if (!a.config_path.empty()) p.memory_gb = c.cluster.gpu.memory_gb;
  p.sources = {{"method", "moe-bench calibrate: compute rates with min(ranks, cores) ranks running the same loop at once, "
                          "MPI with every rank"},
               {"ranks", n},
               {"cores", cores},
               {"shapes_from", a.config_path.empty() ? "built-in (d 256, f 1024, E 16)" : a.config_path},
               {"fit", report}};
  if (world.rank() == 0) {
    const std::string text = profile_to_json(p).dump(2) + "\n";
    if (a.out_path.empty()) {
      std::cout << text;
    } else {
      write_file_atomic(a.out_path, text);
      std::cout << "calibrated profile written to " << a.out_path << " (gemm " << p.peak_tflops * 1e3
                << " GFLOP/s, copy " << p.hbm_gb_s << " GB/s)\n";
    }
  }
  (void)mpi;
  return 0;
}

}  // namespace

Command add_calibrate_command(CLI::App& app) {
  auto args = std::make_shared<CalibrateArgs>();
  Command c;
  c.app = app.add_subcommand("calibrate", "Measure this machine (CPU backend + MPI, under mpirun) and write a hardware profile");
  c.app->add_option("-c,--config", args->config_path, "Config whose model shapes to measure (default: a small built-in model)");
  c.app->add_option("-o,--out", args->out_path, "Hardware profile JSON to write (default: print)");
  c.app->add_option("--budget-ms", args->budget_ms, "Time per measurement trial")->check(CLI::PositiveNumber);
  c.run = [args](MpiSession& mpi, const std::vector<std::string>&) { return run_calibrate(*args, mpi); };
  return c;
}

}  // namespace moe
