// Device-wait policy on the CPU: the timeout comes from run.timeout_s (MOE_CUDA_SYNC_TIMEOUT_S is
// refused), deadline arithmetic, the back-off that keeps a long wait off the core, poll_until's
// three outcomes, teardown while unwinding, and env_number's rejection of nan / inf / junk.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <stdexcept>

#include "backend/env_number.hpp"
#include "backend/wait_policy.hpp"
#include "core/error.hpp"

using namespace moe;
using std::chrono::microseconds;

TEST_CASE("device waits are bounded by run.timeout_s; the old variable is refused", "[wait_policy]") {
  CHECK(device_wait_timeout_s(300, nullptr) == 300);
  CHECK(device_wait_timeout_s(0, "") == 0);
  try {
    device_wait_timeout_s(300, "60");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(e.path() == "MOE_CUDA_SYNC_TIMEOUT_S");
    CHECK(std::string(e.what()).find("run.timeout_s") != std::string::npos);
  }
}

TEST_CASE("deadline arithmetic", "[wait_policy]") {
  const auto t0 = Deadline::Clock::now();
  const Deadline d(t0, 2.0);
  CHECK_FALSE(d.expired(t0));
  CHECK_FALSE(d.expired(t0 + std::chrono::milliseconds(2000)));
  CHECK(d.expired(t0 + std::chrono::milliseconds(2001)));
  CHECK(d.elapsed_s(t0 + std::chrono::milliseconds(500)) == Approx(0.5));
  const Deadline never(t0, 0);
  CHECK(never.unlimited());
  CHECK_FALSE(never.expired(t0 + std::chrono::hours(24 * 365)));
}

TEST_CASE("poll pauses: none at first, then doubling up to the cap", "[wait_policy]") {
  for (int i = 0; i < kSpinPolls; ++i) CHECK(poll_pause(i).count() == 0);
  CHECK(poll_pause(kSpinPolls).count() == 1);
  CHECK(poll_pause(kSpinPolls + 1).count() == 2);
  CHECK(poll_pause(kSpinPolls + 5).count() == 32);
  CHECK(poll_pause(kSpinPolls + 100) == kMaxPause);
  CHECK(poll_pause(1 << 30) == kMaxPause);
  // A wait of 1 s at the cap wakes at most 1 s / 200 us = 5,000 times.
  CHECK(kMaxPause.count() >= 100);
}

TEST_CASE("poll_until: done, failed, expired; pauses once past the spin polls", "[wait_policy]") {
  int calls = 0;
  int64_t slept_us = 0;
  auto sleep = [&](microseconds d) { slept_us += d.count(); };
  const Deadline unlimited = Deadline::from_now(0);
  CHECK(poll_until(unlimited, [&] { return ++calls < 100 ? PollState::pending : PollState::done; }, sleep) ==
        WaitResult::done);
  CHECK(calls == 100);
  CHECK(slept_us > 0);  // polls beyond kSpinPolls paused
  calls = 0;
  CHECK(poll_until(unlimited, [&] { return ++calls < 3 ? PollState::pending : PollState::failed; }, sleep) ==
        WaitResult::failed);
  CHECK(calls == 3);
  // An already expired deadline: one poll, then expired.
  const Deadline past(Deadline::Clock::now() - std::chrono::seconds(10), 1.0);
  calls = 0;
  CHECK(poll_until(past, [&] { ++calls; return PollState::pending; }, sleep) == WaitResult::expired);
  CHECK(calls == 1);
}

TEST_CASE("device teardown does not wait while an exception unwinds", "[wait_policy]") {
  CHECK(device_teardown_may_wait());
  struct Probe {
    bool* seen;
    ~Probe() { *seen = device_teardown_may_wait(); }
  };
  bool during_unwind = true;
  try {
    Probe p{&during_unwind};
    throw std::runtime_error("fail");
  } catch (const std::exception&) {
  }
  CHECK_FALSE(during_unwind);
}

TEST_CASE("env_number rejects nan, inf, negatives and junk", "[wait_policy]") {
  const char* name = "MOE_TEST_ENV_NUMBER";
  unsetenv(name);
  CHECK(env_number(name, 7) == 7);
  setenv(name, "", 1);
  CHECK(env_number(name, 7) == 7);
  setenv(name, "64", 1);
  CHECK(env_number(name, 7) == 64);
  setenv(name, "0.5", 1);
  CHECK(env_number(name, 7) == 0.5);
  for (const char* bad : {"nan", "NaN", "inf", "-1", "12MB", "x"}) {
    INFO(bad);
    setenv(name, bad, 1);
    CHECK_THROWS_AS(env_number(name, 7), ConfigError);
  }
  unsetenv(name);
}
