// Activity context, the timeout message, the watchdog ending a stuck wait (in a forked child),
// and MOE_FAULT parsing.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "expect_config_error.hpp"

using moe::ActivityField;
using moe::ActivityScope;
using moe::testing::expect_config_error;

TEST_CASE("watchdog: activity scopes nest and restore", "[watchdog]") {
  moe::set_activity_strategy("proposed");
  {
    ActivityScope step(ActivityField::step, 3);
    ActivityScope layer(ActivityField::layer, 1);
    {
      ActivityScope phase("dispatch");
      ActivityScope chunk(ActivityField::chunk, 2);
      CHECK(moe::describe_activity() == "dispatch (strategy proposed, layer 1, step 3, chunk 2)");
    }
    CHECK(moe::describe_activity() == "start-up (strategy proposed, layer 1, step 3, chunk -)");
  }
  moe::set_activity_strategy("");
  CHECK(moe::describe_activity() == "start-up (strategy -, layer -, step -, chunk -)");
}

TEST_CASE("watchdog: the timeout message names the phase and the ranks waited for", "[watchdog]") {
  moe::watchdog::start(0, 1);  // rank 1, disabled: only the message is exercised here
  moe::set_activity_strategy("baseline");
  ActivityScope phase("tp_allreduce");
  ActivityScope step(ActivityField::step, 4);
  {
    const std::vector<int> group{0, 1, 2, 3};
    moe::BlockingWait wait(group);
    CHECK(moe::watchdog::timeout_message(5) ==
          "[rank 1] timeout after 5 s in tp_allreduce (strategy baseline, layer -, step 4, chunk -) waiting for ranks "
          "[0, 2, 3] (a collective over 4 ranks; which of them is late is not known)");
  }
  {
    moe::BlockingWait wait(2);
    CHECK(moe::watchdog::timeout_message(300) ==
          "[rank 1] timeout after 300 s in tp_allreduce (strategy baseline, layer -, step 4, chunk -) waiting for ranks [2]");
    moe::BlockingWait nested(moe::BlockingWait::CollectiveOver{8});  // the outer wait is the one reported
    CHECK(moe::watchdog::timeout_message(300).find("waiting for ranks [2]") != std::string::npos);
  }
  {
    moe::BlockingWait wait(moe::BlockingWait::CollectiveOver{8});
    CHECK(moe::watchdog::timeout_message(1.5).find("waiting in a collective over 8 ranks") != std::string::npos);
  }
  {
    moe::BlockingWait wait(moe::BlockingWait::DeviceStream{});  // CUDA: a stream with NCCL work queued
    CHECK(moe::watchdog::timeout_message(300).find("waiting for a device stream") != std::string::npos);
  }
  moe::set_activity_strategy("");
}

TEST_CASE("watchdog: a wait past the timeout runs the hooks and ends the process; a short one does not", "[watchdog]") {
  // In a child: the watchdog must end it (exit 42 from the abort function) long before it
  // would end by itself.
  const auto run_child = [](double wait_s) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      moe::watchdog::set_abort_function([](int) { std::_Exit(42); });
      moe::watchdog::add_abort_hook([](const std::string& reason) {
        if (reason.find("timeout after 0.2 s in gate") == std::string::npos) std::_Exit(43);
      });
      moe::watchdog::start(0.2, 0);
      ActivityScope phase("gate");
      {
        moe::BlockingWait wait(1);
        std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // not waiting: no timeout
      std::_Exit(0);
    }
    int status = 0;
    const auto t0 = std::chrono::steady_clock::now();
    waitpid(pid, &status, 0);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, took);
  };
  const auto stuck = run_child(10);
  CHECK(stuck.first == 42);
  CHECK(stuck.second < 3);
  const auto quick = run_child(0.05);
  CHECK(quick.first == 0);
}

TEST_CASE("watchdog: MOE_FAULT parses and names what is wrong", "[watchdog]") {
  const moe::FaultSpec f = moe::parse_fault_spec("rank:2,phase:dispatch,step:3,action:hang");
  CHECK(f.rank == 2);
  CHECK(f.phase == "dispatch");
  CHECK(f.step == 3);
  CHECK(f.layer == -1);
  CHECK(f.action == "hang");
  CHECK(moe::parse_fault_spec("action:throw,layer:1,phase:combine,rank:0").layer == 1);
  expect_config_error([] { moe::parse_fault_spec("rank:2,phase:dispatch"); }, "MOE_FAULT", "'action' is missing");
  expect_config_error([] { moe::parse_fault_spec("rank:x,phase:dispatch,action:hang"); }, "MOE_FAULT",
                      "rank must be a non-negative integer, got 'x'");
  expect_config_error([] { moe::parse_fault_spec("rank:1,phase:dispach,action:hang"); }, "MOE_FAULT",
                      "unknown phase 'dispach'");
  expect_config_error([] { moe::parse_fault_spec("rank:1,phase:dispatch,action:explode"); }, "MOE_FAULT",
                      "action must be hang, crash or throw, got 'explode'");
  expect_config_error([] { moe::parse_fault_spec("rank:1,rank:2,phase:dispatch,action:hang"); }, "MOE_FAULT",
                      "'rank' is given twice");
  expect_config_error([] { moe::parse_fault_spec("rank:1,when:now,phase:dispatch,action:hang"); }, "MOE_FAULT",
                      "unknown key 'when'");
  expect_config_error([] { moe::parse_fault_spec("rank1"); }, "MOE_FAULT", "'rank1' is not key:value");
}

TEST_CASE("watchdog: an armed throw fault fires once, at its phase and step", "[watchdog]") {
  setenv("MOE_FAULT", "rank:0,phase:combine,step:2,action:throw", 1);
  CHECK(moe::arm_fault_from_environment(0) == "rank:0,phase:combine,step:2,action:throw");
  unsetenv("MOE_FAULT");
  {
    ActivityScope step(ActivityField::step, 1);
    CHECK_NOTHROW(ActivityScope("combine"));  // wrong step
  }
  ActivityScope step(ActivityField::step, 2);
  CHECK_NOTHROW(ActivityScope("dispatch"));  // wrong phase
  CHECK_THROWS_WITH(ActivityScope("combine"), Catch::Contains("injected fault") && Catch::Contains("combine"));
  CHECK_NOTHROW(ActivityScope("combine"));  // once only
  CHECK(moe::describe_activity().rfind("start-up", 0) == 0);  // the throwing scope restored the phase
}
