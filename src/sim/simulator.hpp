// Time model: the duration of every kernel and communication of a StepCost on a HardwareProfile, and
// the event schedule of a step (the ep step's stages over a compute stream and the network; GPipe
// micro-batches over pipeline stages, transfers blocking or posted), giving step time, per-phase
// times, overlap and roofline bounds.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "cost/cost_model.hpp"
#include "sim/hardware.hpp"

namespace moe {

// Where one phase's time goes on the busiest rank, summed over the step. The bound is the largest of
// compute (FLOPs at the kernel rates), memory (bytes at the memory rates) and network; overheads
// (launches, host work, host<->device copies) are reported apart.
struct PhaseRoofline {
  double compute_ms = 0;
  double memory_ms = 0;
  double network_ms = 0;
  double overhead_ms = 0;
  std::string bound() const;   // "compute" | "memory" | "network" | "overhead" | "none"
  double ratio() const;        // binding time / the next largest of the three (>= 1; 0 when unbound)
};

struct StepTiming {
  double time_ms = 0;                                // wall time of the step (slowest rank)
  std::array<double, kNumPhases> phase_max_ms{};     // over ranks (pipeline stages for tp_pp)
  std::array<double, kNumPhases> phase_mean_ms{};
  double idle_max_ms = 0, idle_mean_ms = 0;          // step time outside any phase
  std::array<PhaseRoofline, kNumPhases> roofline{};
  double comm_ms = 0;          // communication time on the critical rank
  double exposed_comm_ms = 0;  // of which the compute stream waited for
  double busy_all_ranks_ms = 0;  // kernel and host work summed over every rank (shared-core bound)
};

// Durations in milliseconds.
double kernel_ms(const Kernel& k, const HardwareProfile& hw);
double comm_ms(const CommCost& c, const HardwareProfile& hw);

// Times one step by replaying its schedule (StepCost::schedule, the one the runtime executes) with a
// duration per stage from its cost (StepCost::stage_costs): what overlaps is the strategy's overlap
// mode, on every backend.
StepTiming simulate_step(const StepCost& s, const HardwareProfile& hw);

}  // namespace moe
