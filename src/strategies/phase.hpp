// Named phases of a step and the timer that attributes device time to them with backend events.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/watchdog.hpp"

namespace moe {

enum class Phase { attention = 0, gate, dispatch, expert, combine, tp_allreduce, pp_transfer, other, count };
constexpr int kNumPhases = static_cast<int>(Phase::count);
const char* phase_name(Phase p);

using PhaseTimes = std::array<double, kNumPhases>;  // milliseconds

// Brackets phases with events on the compute stream; finish_step() synchronizes and returns the
// milliseconds spent in each phase since the last finish_step(). Phases do not nest.
class PhaseTimer {
 public:
  explicit PhaseTimer(ComputeBackend& compute) : compute_(compute) {}
  void begin(Phase p);
  void end();
  PhaseTimes finish_step();

 private:
  struct Span {
    Phase phase;
    Event start;
    Event stop;
  };
  ComputeBackend& compute_;
  std::vector<Span> spans_;
  bool open_ = false;
};

// RAII bracket: { ScopedPhase s(timer, Phase::gate); ... }
class ScopedPhase {
 public:
  ScopedPhase(PhaseTimer& t, Phase p) : activity_(phase_name(p)), t_(t) { t_.begin(p); }
  ~ScopedPhase() { t_.end(); }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  ActivityScope activity_;   // the watchdog and MOE_FAULT see the phase
  PhaseTimer& t_;
};

}  // namespace moe
