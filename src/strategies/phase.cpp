// Phase names and event-based phase timing.
#include "strategies/phase.hpp"

#include "core/error.hpp"

namespace moe {

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::attention: return "attention";
    case Phase::gate: return "gate";
    case Phase::dispatch: return "dispatch";
    case Phase::expert: return "expert";
    case Phase::combine: return "combine";
    case Phase::tp_allreduce: return "tp_allreduce";
    case Phase::pp_transfer: return "pp_transfer";
    case Phase::other: return "other";
    case Phase::count: break;
  }
  return "?";
}

void PhaseTimer::begin(Phase p) {
  MOE_REQUIRE(!open_, std::string("phase ") + phase_name(p) + " begins inside another phase");
  open_ = true;
  compute_.range_push(phase_name(p));
  spans_.push_back(Span{p, compute_.record(Stream::compute), Event{}});
}

void PhaseTimer::end() {
  MOE_REQUIRE(open_ && !spans_.empty(), "phase end without begin");
  spans_.back().stop = compute_.record(Stream::compute);
  compute_.range_pop();
  open_ = false;
}

PhaseTimes PhaseTimer::finish_step() {
  MOE_REQUIRE(!open_, "finish_step inside an open phase");
  compute_.synchronize_all();
  PhaseTimes t{};
  for (const Span& s : spans_) t[static_cast<int>(s.phase)] += compute_.elapsed_ms(s.start, s.stop);
  spans_.clear();
  compute_.reset_events();
  return t;
}

}  // namespace moe
