// The step schedules (see simulator.hpp), timed with the durations of durations.hpp. What a stage
// costs comes from the step (StepCost::stage_costs, one per schedule stage, attached by the cost
// model): a stage's duration is the time of the ops it runs; the roofline and the work of all ranks
// sum the step's op list (StepCost::ops, outside_ops). Nothing here says which op a kind of stage runs.
#include "sim/simulator.hpp"
#include "sim/durations.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace moe {

using namespace sim_detail;

namespace {

double work_ms(const Op& op, const HardwareProfile& hw) {  // kernels and host work only
  double t = 0;
  for (const Kernel& k : op.kernels) t += kernel_ms(k, hw);
  return t;
}
// The op's kernel and host work summed over the `ranks` ranks that run it: every rank's own kernels
// when the op lists them (uneven routing), else `ranks` times the busiest rank's.
double work_all_ranks_ms(const Op& op, const HardwareProfile& hw, int ranks) {
  if (op.kernels_all_ranks.empty()) return ranks * work_ms(op, hw);
  double t = 0;
  for (const Kernel& k : op.kernels_all_ranks) t += kernel_ms(k, hw);
  return t;
}

double kernels_ms(const Op& op, StepRates& r) { return work_ms(op, r.hw) + r.comm(op.control); }
double op_ms(const Op& op, StepRates& r) { return kernels_ms(op, r) + r.comm(op.comm); }

// Adds an op's time split to its phase's roofline (`times` occurrences on the critical rank).
void add_roofline(StepTiming& t, const Op& op, StepRates& rates, double times) {
  const HardwareProfile& hw = rates.hw;
  PhaseRoofline& r = t.roofline[static_cast<int>(op.phase)];
  for (const Kernel& k : op.kernels) {
    if (is_host(k.kind) || is_transfer(k.kind)) {
      r.overhead_ms += times * kernel_ms(k, hw);
      continue;
    }
    r.compute_ms += times * (k.flops > 0 ? k.flops / (hw.tflops(k.kind) * 1e9) : 0);
    r.memory_ms += times * k.bytes / per_ms(hw.gb_s(k.kind));
    r.overhead_ms += times * (k.launches * hw.kernel_overhead_us * 1e-3 + (k.host_sync ? hw.host_sync_us * 1e-3 : 0));
  }
  r.network_ms += times * (rates.comm(op.control) + rates.comm(op.comm));
}

// In-order queues on two resources (compute stream, network) with dependencies between tasks.
struct Task {
  int resource;            // 0 compute, 1 network
  double duration;
  std::vector<int> deps;
  double end = -1;
};

double run_queues(std::vector<Task>& tasks, const std::vector<std::vector<int>>& queues, double start,
                  double* compute_busy) {
  std::vector<size_t> head(queues.size(), 0);
  std::vector<double> free(queues.size(), start);
  size_t done = 0, total = 0;
  for (const auto& q : queues) total += q.size();
  while (done < total) {
    bool progressed = false;
    for (size_t r = 0; r < queues.size(); ++r) {
      if (head[r] == queues[r].size()) continue;
      Task& t = tasks[queues[r][head[r]]];
      double ready = free[r];
      bool ok = true;
      for (int d : t.deps) {
        if (tasks[d].end < 0) ok = false;
        ready = std::max(ready, tasks[d].end);
      }
      if (!ok) continue;
      t.end = ready + t.duration;
      free[r] = t.end;
      if (r == 0 && compute_busy) *compute_busy += t.duration;
      ++head[r];
      ++done;
      progressed = true;
    }
    MOE_REQUIRE(progressed, "simulator: schedule dependencies form a cycle");
  }
  return *std::max_element(free.begin(), free.end());
}

// Time of what a stage runs of an op, and the communication in it.
double use_ms(const Op& op, const OpUse& u, StepRates& r) {
  switch (u.part) {
    case OpPart::all: return op_ms(op, r) * u.share;
    case OpPart::kernels: return kernels_ms(op, r) * u.share;
    case OpPart::comm: return r.comm(op.comm) * u.share;
  }
  return 0;
}
double use_comm_ms(const Op& op, const OpUse& u, StepRates& r) {
  return u.part == OpPart::kernels ? 0.0 : r.comm(op.comm) * u.share;
}

// Roofline of the step's ops (each as often as the step runs it): the ops of the stages, then those
// outside any stage.
void add_step_roofline(StepTiming& t, const StepCost& s, StepRates& r) {
  for (const std::vector<OpCount>* list : {&s.ops, &s.outside_ops})
    for (const OpCount& o : *list) add_roofline(t, s.op(o.op), r, o.times);
}

// The step's costed stages as tasks: stages on the compute stream on resource 0 (host work, kernels,
// blocking collectives such as the count exchange), the others on resource 1 (the network: transfers
// share the links, so one queue), each with its duration and the stages it waits for. Adds each
// compute stage's time to the phases of its ops in `t`.
struct StageTasks {
  std::vector<Task> tasks;
  std::vector<std::vector<int>> queues = std::vector<std::vector<int>>(2);
};

StageTasks stage_tasks(const StepCost& s, StepRates& r, StepTiming& t) {
  MOE_REQUIRE(s.stage_costs.size() == s.schedule.stages.size(), "simulator: the step's stages are not costed");
  StageTasks out;
  for (size_t i = 0; i < s.schedule.stages.size(); ++i) {
    const Stage& st = s.schedule.stages[i];
    const StageCost& c = s.stage_costs[i];
    double d = 0;
    for (const OpUse& u : c) {
      const Op& op = s.op(u.op);
      const double ms = use_ms(op, u, r);
      if (!c.communication) t.phase_max_ms[static_cast<int>(op.phase)] += ms;
      d += ms;
    }
    const int resource = st.stream == Stream::compute ? 0 : 1;
    out.queues[resource].push_back(static_cast<int>(out.tasks.size()));
    out.tasks.push_back({resource, d, st.after});
  }
  return out;
}

// The kernel and host work of every rank over the step (for time-shared cores): the ops outside any
// stage, then the stages' ops.
double work_all_ranks_ms(const StepCost& s, const HardwareProfile& hw) {
  double work = 0;
  for (const std::vector<OpCount>* list : {&s.outside_ops, &s.ops})
    for (const OpCount& o : *list) work += o.times * work_all_ranks_ms(s.op(o.op), hw, s.ranks);
  return work;
}

// Replays the step's schedule (schedule/schedule.hpp), the one the runtime executes: compute
// stages in schedule order on the compute stream, dispatch and combine in schedule order on the
// network, each stage after the stages it waits for. Communication and exposure come from the stage
// intervals as in the runtime's spans.
StepTiming simulate_ep(const StepCost& s, const HardwareProfile& hw) {
  StepTiming t;
  MOE_REQUIRE(!s.schedule.stages.empty(), "simulator: ep step without a schedule");
  StepRates rates(hw);
  StageTasks st = stage_tasks(s, rates, t);
  add_step_roofline(t, s, rates);
  t.busy_all_ranks_ms = work_all_ranks_ms(s, hw);
  const double end = run_queues(st.tasks, st.queues, 0, nullptr);
  std::vector<Interval> comm, work, all;
  for (size_t i = 0; i < st.tasks.size(); ++i) {
    const Interval iv{st.tasks[i].end - st.tasks[i].duration, st.tasks[i].end};
    (s.stage_costs[i].communication ? comm : work).push_back(iv);
    all.push_back(iv);
  }
  t.comm_ms = union_ms(comm);
  t.exposed_comm_ms = uncovered_ms(comm, work);
  // As in the runtime's phases: a transfer counts in its phase for the time nothing computed.
  const std::vector<double> exposed = uncovered_each_ms(all, work);
  auto phase = [&](Phase p) -> double& { return t.phase_max_ms[static_cast<int>(p)]; };
  for (size_t i = 0; i < st.tasks.size(); ++i)
    if (s.stage_costs[i].communication) phase(s.stage_costs[i].phase) += exposed[i];
  double tail = 0;
  for (const OpCount& o : s.outside_ops) tail += o.times * op_ms(s.op(o.op), rates);
  phase(Phase::other) += tail;
  t.time_ms = end + tail;
  t.phase_mean_ms = t.phase_max_ms;  // expected routing: ranks differ only by replica shares
  t.idle_max_ms = t.idle_mean_ms = std::max(0.0, end - union_ms(all));
  return t;
}

// One micro-batch on a pipeline stage, from the costed stages of micro-batch 0: the time of its
// compute-stream stages (the blocking all-reduces included) per phase and in all, the communication
// in them, and its transfer to the next stage.
struct MicroBatch {
  std::array<double, kNumPhases> phases{};
  double compute = 0, comm = 0, hop = 0;
};

MicroBatch micro_batch(const StepCost& s, StepRates& r) {
  MOE_REQUIRE(s.stage_costs.size() == s.schedule.stages.size(), "simulator: the step's stages are not costed");
  MicroBatch mb;
  for (size_t i = 0; i < s.schedule.stages.size(); ++i) {
    const Stage& st = s.schedule.stages[i];
    if (st.part != 0) continue;
    for (const OpUse& u : s.stage_costs[i]) {
      const Op& op = s.op(u.op);
      const double d = use_ms(op, u, r);
      if (st.stream != Stream::compute) {
        mb.hop += d;
        continue;
      }
      mb.phases[static_cast<int>(op.phase)] += d;
      mb.compute += d;
      mb.comm += use_comm_ms(op, u, r);
    }
  }
  return mb;
}

// GPipe forward. With blocking transfers (overlap none; NCCL send/recv and large MPI messages complete
// only when both stages are there) a stage sends micro-batch m after computing it and cannot start m+1
// before the next stage has received it. With posted transfers (pipelined) the sender goes on at once
// (its sends queue on its send stream) and the receiver, whose receive is already posted, starts m
// when it has arrived. After the last micro-batch the last stage sends rms(y_last) to stage 0.
StepTiming simulate_tp_pp(const StepCost& s, const HardwareProfile& hw) {
  StepTiming t;
  const int P = s.stages, M = s.microbatches;
  StepRates rates(hw);
  const MicroBatch mb = micro_batch(s, rates);
  const std::array<double, kNumPhases>& per_mb = mb.phases;
  const double mb_compute = mb.compute, mb_comm = mb.comm, hop = mb.hop;
  add_step_roofline(t, s, rates);
  const double in_copy = op_ms(s.stage_input, rates), out_copy = op_ms(s.stage_output, rates);
  const double fb = op_ms(s.feedback, rates), fb_send = rates.comm(s.feedback_send.comm);

  const bool posted = s.schedule.posted_transfers;
  std::vector<double> free(P, 0.0), ready(P, 0.0), pp(P, 0.0), other(P, 0.0), send_free(P, 0.0);
  for (int m = 0; m < M; ++m)
    for (int st = 0; st < P; ++st) {
      if (st > 0 && posted) {
        const double xe = std::max(ready[st - 1], send_free[st - 1]) + hop;
        send_free[st - 1] = xe;
        pp[st] += std::max(0.0, xe - free[st]);
        free[st] = std::max(free[st], xe);
      } else if (st > 0) {
        const double xs = std::max(ready[st - 1], free[st]), xe = xs + hop;
        pp[st - 1] += xe - ready[st - 1];
        pp[st] += xe - free[st];
        free[st - 1] = free[st] = xe;
      }
      const double extra = (st == 0 ? in_copy : 0) + (st == P - 1 ? out_copy : 0);
      other[st] += extra;
      free[st] += mb_compute + extra;
      ready[st] = free[st];
    }
  free[P - 1] += fb;
  other[P - 1] += fb;
  if (P > 1) {
    const double xs = std::max(free[P - 1], free[0]), xe = xs + fb_send;
    pp[P - 1] += xe - free[P - 1];
    pp[0] += xe - free[0];
    free[0] = free[P - 1] = xe;
  }
  if (posted) for (int st = 0; st < P; ++st) free[st] = std::max(free[st], send_free[st]);  // sends complete in the step
  t.time_ms = *std::max_element(free.begin(), free.end());
  for (int st = 0; st < P; ++st) {
    std::array<double, kNumPhases> ph{};
    double inside = 0;
    for (int i = 0; i < kNumPhases; ++i) ph[i] = per_mb[i] * M;
    ph[static_cast<int>(Phase::other)] += other[st];
    ph[static_cast<int>(Phase::pp_transfer)] += pp[st];
    for (int i = 0; i < kNumPhases; ++i) {
      t.phase_max_ms[i] = std::max(t.phase_max_ms[i], ph[i]);
      t.phase_mean_ms[i] += ph[i] / P;
      inside += ph[i];
    }
    const double idle = std::max(0.0, free[st] - inside);
    t.idle_max_ms = std::max(t.idle_max_ms, idle);
    t.idle_mean_ms += idle / P;
  }
  // All-reduces and the feedback are blocking: exposed. Blocking pipeline transfers are exposed; posted
  // ones only where the receiving stage waited for them.
  t.comm_ms = mb_comm * M + (P > 1 ? hop * M + fb_send : 0);
  t.exposed_comm_ms = t.comm_ms;
  if (posted && P > 1) {
    double wait = 0;
    for (int st = 1; st < P; ++st) wait = std::max(wait, pp[st]);
    t.exposed_comm_ms = mb_comm * M + fb_send + std::min(wait, hop * M);
  }
  double stage_work = 0;
  for (int st = 0; st < P; ++st) stage_work += (mb_compute - mb_comm) * M + other[st];
  t.busy_all_ranks_ms = s.tp * stage_work;
  return t;
}

}  // namespace

StepTiming simulate_step(const StepCost& s, const HardwareProfile& hw) {
  StepTiming t;
  switch (s.kind) {
    case StrategyKind::ep: t = simulate_ep(s, hw); break;
    case StrategyKind::tp_pp: t = simulate_tp_pp(s, hw); break;
  }
  // More ranks than cores: the ranks' work is time-shared, so the step cannot beat the total work
  // divided by the cores. Every phase stretches by the same factor (the waiting moves with it).
  if (hw.shared_cores > 0 && s.ranks > hw.shared_cores && t.time_ms > 0) {
    const double f = std::max(1.0, t.busy_all_ranks_ms / hw.shared_cores / t.time_ms);
    t.time_ms *= f;
    for (int i = 0; i < kNumPhases; ++i) {
      t.phase_max_ms[i] *= f;
      t.phase_mean_ms[i] *= f;
    }
    t.idle_max_ms *= f;
    t.idle_mean_ms *= f;
  }
  return t;
}

}  // namespace moe
