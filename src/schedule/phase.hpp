// Named phases of a step and the timer that records the spans of a step's stages with backend
// events: compute spans bracket work on the compute stream, communication spans run from a
// transfer's posting to its completion. From the spans come the per-phase times, the overlap of
// communication with computation, and the per-rank trace.
#pragma once
#include <array>
#include <chrono>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/watchdog.hpp"

namespace moe {

enum class Phase { attention = 0, gate, dispatch, expert, combine, tp_allreduce, pp_transfer, other, count };
constexpr int kNumPhases = static_cast<int>(Phase::count);
const char* phase_name(Phase p);

using PhaseTimes = std::array<double, kNumPhases>;  // milliseconds

// What a span was: the stage name, layer, part (chunk or micro-batch) and bytes moved.
struct SpanTag {
  const char* stage = "";
  int layer = -1;
  int part = -1;
  int64_t bytes = 0;
};

// One span, in milliseconds since the step's origin.
struct SpanRecord {
  Phase phase = Phase::other;
  Stream stream = Stream::compute;
  bool communication = false;
  double start_ms = 0, end_ms = 0;
  SpanTag tag;
};

// A half-open interval [begin, end) in milliseconds.
struct Interval {
  double begin = 0, end = 0;
};
// Total length of the union of `v`.
double union_ms(std::vector<Interval> v);
// Length of the union of `a` not covered by the union of `b`.
double uncovered_ms(std::vector<Interval> a, std::vector<Interval> b);
// For each interval of `items`, its length not covered by the union of `cover` (cover merged once).
std::vector<double> uncovered_each_ms(const std::vector<Interval>& items, std::vector<Interval> cover);

struct StepSpans {
  // Per phase: compute spans, plus the part of communication spans no compute span covered (the time
  // the step waited for them), so that the phases of a step add up to at most its time.
  PhaseTimes phases{};
  double busy_ms = 0;           // union of every span
  double comm_ms = 0;           // union of the communication spans
  double exposed_comm_ms = 0;   // of it, the time not covered by a compute span
  std::vector<SpanRecord> spans;   // kept only with keep_spans(true)
  // Per phase: the host work inside it (see ScopedHostWork), by the host clock.
  PhaseTimes host{};
};

class PhaseTimer {
 public:
  explicit PhaseTimer(ComputeBackend& compute) : compute_(compute) {}
  // Origin of the step's span times (the runner calls it right after the step's barrier).
  void start_step();
  // A compute span on the compute stream. Compute spans do not nest.
  void begin(Phase p, SpanTag tag = {});
  void end();
  // A communication span between two recorded events (posting and completion).
  void communication(Phase p, Stream s, Event start, Event stop, SpanTag tag = {});
  void keep_spans(bool on) { keep_ = on; }
  // Host work inside phase p, timed by the host clock. Brackets nest; only the outermost counts,
  // for its phase (an inner bracket's phase is ignored).
  void begin_host(Phase p);
  void end_host();
  // Synchronizes the device and returns the step's spans; the next step starts empty.
  StepSpans finish_step();

 private:
  struct Span {
    Phase phase;
    Stream stream;
    bool communication;
    Event start;
    Event stop;
    SpanTag tag;
  };
  ComputeBackend& compute_;
  std::vector<Span> spans_;
  Event origin_;
  bool has_origin_ = false;
  bool open_ = false;
  bool keep_ = false;
  PhaseTimes host_{};
  int host_depth_ = 0;
  Phase host_phase_ = Phase::other;
  std::chrono::steady_clock::time_point host_start_;
};

// RAII bracket of a blocking communication on the compute stream (an all-reduce, a blocking
// point-to-point transfer): a communication span nothing overlaps.
class ScopedCommunication {
 public:
  ScopedCommunication(PhaseTimer& t, ComputeBackend& compute, Phase p, SpanTag tag)
      : activity_(phase_name(p)), t_(t), compute_(compute), p_(p), tag_(tag), start_(compute.record(Stream::compute)) {}
  ~ScopedCommunication() { t_.communication(p_, Stream::compute, start_, compute_.record(Stream::compute), tag_); }
  ScopedCommunication(const ScopedCommunication&) = delete;
  ScopedCommunication& operator=(const ScopedCommunication&) = delete;

 private:
  ActivityScope activity_;   // the watchdog and MOE_FAULT see the phase
  PhaseTimer& t_;
  ComputeBackend& compute_;
  Phase p_;
  SpanTag tag_;
  Event start_;
};

// RAII bracket of host work inside a phase: { ScopedHostWork h(timer, Phase::gate); ... }. Host work
// is what the host computes or waits for that is not device work: routing decisions (softmax, top-k,
// the synthetic choice, counting, balancing), dispatch planning, capacity bookkeeping and control-plane
// exchanges (count all-to-alls). The definition is the same on both backends: on the CPU backend, where
// kernels run on the host too, kernels stay outside these brackets. Placed inside a phase's span (a
// ScopedPhase or a ScopedCommunication), so that on the CPU backend a phase's host time is at most
// its time; on CUDA, host time inside an event span is the part of that span the host spent.
class ScopedHostWork {
 public:
  ScopedHostWork(PhaseTimer& t, Phase p) : t_(t) { t_.begin_host(p); }
  ~ScopedHostWork() { t_.end_host(); }
  ScopedHostWork(const ScopedHostWork&) = delete;
  ScopedHostWork& operator=(const ScopedHostWork&) = delete;

 private:
  PhaseTimer& t_;
};

// RAII bracket: { ScopedPhase s(timer, Phase::gate); ... }
class ScopedPhase {
 public:
  ScopedPhase(PhaseTimer& t, Phase p, SpanTag tag = {}) : activity_(phase_name(p)), t_(t) { t_.begin(p, tag); }
  ~ScopedPhase() { t_.end(); }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  ActivityScope activity_;   // the watchdog and MOE_FAULT see the phase
  PhaseTimer& t_;
};

}  // namespace moe
