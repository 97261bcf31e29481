// The phase timer's host-work accumulator: time in ScopedHostWork brackets goes to the bracket's phase,
// nested brackets count once (for the outermost bracket's phase), a step's host time is reset by
// finish_step, and on the CPU backend a phase's host time is at most the phase's time.
#include <catch2/catch.hpp>

#include <chrono>

#include "backend/cpu/cpu_compute.hpp"
#include "schedule/phase.hpp"

using namespace moe;

namespace {

void busy_ms(double ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double, std::milli>(ms);
  while (std::chrono::steady_clock::now() < until) {
  }
}

double host(const StepSpans& s, Phase p) { return s.host[static_cast<int>(p)]; }
double phase(const StepSpans& s, Phase p) { return s.phases[static_cast<int>(p)]; }

}  // namespace

TEST_CASE("host work is attributed to its phase and bounded by the phase's time") {
  auto compute = make_cpu_compute();
  PhaseTimer t(*compute);
  t.start_step();
  {
    ScopedPhase p(t, Phase::gate);
    busy_ms(2);   // kernel-like work: in the phase, not host work
    ScopedHostWork h(t, Phase::gate);
    busy_ms(3);
  }
  {
    ScopedPhase p(t, Phase::dispatch);
    ScopedHostWork h(t, Phase::dispatch);
    busy_ms(1);
  }
  {
    ScopedPhase p(t, Phase::expert);
    busy_ms(1);
  }
  const StepSpans s = t.finish_step();
  CHECK(host(s, Phase::gate) >= 3);
  CHECK(host(s, Phase::gate) <= phase(s, Phase::gate));
  CHECK(phase(s, Phase::gate) - host(s, Phase::gate) >= 2 - 1e-9);
  CHECK(host(s, Phase::dispatch) >= 1);
  CHECK(host(s, Phase::dispatch) <= phase(s, Phase::dispatch));
  CHECK(host(s, Phase::expert) == 0);
  CHECK(host(s, Phase::attention) == 0);
}

TEST_CASE("nested host work counts once, for the outermost bracket's phase") {
  auto compute = make_cpu_compute();
  PhaseTimer t(*compute);
  t.start_step();
  {
    ScopedPhase p(t, Phase::dispatch);
    ScopedHostWork outer(t, Phase::dispatch);
    busy_ms(1);
    {
      ScopedHostWork inner(t, Phase::gate);   // inside the outer bracket: not a second count
      busy_ms(2);
    }
    busy_ms(1);
  }
  const StepSpans s = t.finish_step();
  CHECK(host(s, Phase::gate) == 0);
  CHECK(host(s, Phase::dispatch) >= 4);
  CHECK(host(s, Phase::dispatch) <= phase(s, Phase::dispatch));
}

TEST_CASE("host work inside a blocking communication span counts for its phase") {
  auto compute = make_cpu_compute();
  PhaseTimer t(*compute);
  t.start_step();
  {
    ScopedCommunication c(t, *compute, Phase::dispatch, SpanTag{"counts", 0, -1, 0});
    ScopedHostWork h(t, Phase::dispatch);
    busy_ms(2);
  }
  const StepSpans s = t.finish_step();
  CHECK(host(s, Phase::dispatch) >= 2);
  CHECK(host(s, Phase::dispatch) <= phase(s, Phase::dispatch));
}

TEST_CASE("each step starts with no host time; an unbalanced bracket is an error") {
  auto compute = make_cpu_compute();
  PhaseTimer t(*compute);
  t.start_step();
  {
    ScopedPhase p(t, Phase::gate);
    ScopedHostWork h(t, Phase::gate);
    busy_ms(1);
  }
  CHECK(host(t.finish_step(), Phase::gate) >= 1);
  t.start_step();
  { ScopedPhase p(t, Phase::gate); }
  CHECK(host(t.finish_step(), Phase::gate) == 0);
  CHECK_THROWS(t.end_host());
  t.start_step();
  t.begin_host(Phase::gate);
  CHECK_THROWS(t.finish_step());
}
