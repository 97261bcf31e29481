// The progress line: silent for short runs, paced (every interval, or rewritten in place on a
// terminal), its fields (strategy, phase, iteration, step, elapsed, ETA), and off when disabled.
#include <catch2/catch.hpp>

#include <sstream>

#include "runner/progress.hpp"

using namespace moe;

namespace {

// 2 strategies x 10 units; the fake clock advances 1 s per step.
struct Fixture {
  double t = 100;
  std::ostringstream out;
  ProgressOptions options;
  Fixture() {
    options.enabled = true;
    options.first_after_s = 3;
    options.interval_s = 10;
    options.refresh_s = 0.5;
  }
};

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = 0; (p = s.find(what, p)) != std::string::npos; p += what.size()) ++n;
  return n;
}

}  // namespace

TEST_CASE("progress lines appear after the first seconds, then every interval", "[progress]") {
  Fixture f;
  {
    Progress p(f.out, f.options, [&] { return f.t; });
    p.begin_run(2, 10);
    p.begin_strategy(0, "baseline");
    f.t += 1;
    p.step_done("warm-up", 0, 0, 0, 0);
    f.t += 1;
    p.step_done("prefill", 1, 2, 0, 0);
    CHECK(f.out.str().empty());  // 2 s: a short run prints nothing
    for (int step = 1; step <= 8; ++step) {
      f.t += 1;
      p.step_done("decode", 1, 2, step, 8);
    }
    p.begin_strategy(1, "proposed");
    for (int step = 1; step <= 10; ++step) {
      f.t += 1;
      p.step_done("decode", 2, 2, step, 8);
    }
  }
  const std::string s = f.out.str();
  // 20 s of steps: lines at 3 s and 13 s (interval 10 s), each ending in a newline, no '\r'.
  CHECK(count(s, "\n") == 2);
  CHECK(s.find('\r') == std::string::npos);
  CHECK_THAT(s, Catch::StartsWith("moe-bench: baseline (1/2) decode iteration 1/2 step 1/8  elapsed 3s  ETA 17s\n"));
  CHECK_THAT(s, Catch::Contains("moe-bench: proposed (2/2) decode iteration 2/2 step 3/8  elapsed 13s  ETA 7s\n"));
}

TEST_CASE("on a terminal the line is rewritten in place and cleared at the end", "[progress]") {
  Fixture f;
  f.options.in_place = true;
  std::string last, previous;
  {
    Progress p(f.out, f.options, [&] { return f.t; });
    p.begin_run(1, 100);
    p.begin_strategy(0, "a-long-strategy-name");
    for (int i = 1; i <= 6; ++i) {
      f.t += 1;
      p.step_done("decode", 1, 1, i, 100);
    }
    previous = p.line(f.t);
    p.begin_strategy(0, "b");  // a shorter line pads over the longer one
    f.t += 1;
    p.step_done("decode", 1, 1, 7, 100);
    last = p.line(f.t);
  }
  const std::string s = f.out.str();
  CHECK(s.find('\n') == std::string::npos);
  CHECK(count(s, "\r") == 4 + 1 + 2);  // 4 rewrites (from 3 s, 1 s apart), the short one, the clear
  REQUIRE(previous.size() > last.size());
  CHECK_THAT(s, Catch::Contains("\r" + last + std::string(previous.size() - last.size(), ' ') + "\r"));
  CHECK_THAT(s, Catch::EndsWith("\r" + std::string(last.size(), ' ') + "\r"));
}

TEST_CASE("a disabled progress prints nothing; durations in minutes and hours", "[progress]") {
  Fixture f;
  f.options.enabled = false;
  {
    Progress p(f.out, f.options, [&] { return f.t; });
    p.begin_run(1, 4);
    p.begin_strategy(0, "x");
    for (int i = 0; i < 4; ++i) {
      f.t += 100;
      p.step_done("decode", 1, 1, i + 1, 4);
    }
    CHECK(p.line(100 + 4140) == "moe-bench: x (1/1) decode iteration 1/1 step 4/4  elapsed 1h09m");
    CHECK_THAT(p.line(f.t), Catch::Contains("elapsed 6m40s"));
  }
  CHECK(f.out.str().empty());
}
