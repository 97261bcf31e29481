// Deadlines and polling for waits on work the host cannot block on safely (a device stream with
// NCCL kernels, a non-blocking NCCL communicator being created): the deadline arithmetic, the
// back-off between polls (so a waiting rank does not spin on a full core), and the poll loop.
// Pure host code, unit tested on the CPU; the CUDA backend supplies the polls.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace moe {

// The limit of one device wait: run.timeout_s (0 = none). MOE_CUDA_SYNC_TIMEOUT_S no longer sets it:
// a value there is an error naming run.timeout_s, so an old job script cannot silently lose it.
double device_wait_timeout_s(double run_timeout_s, const char* legacy_env_value);

// Whether destructors may wait on the device (cudaFree, cudaStreamSynchronize, cublasDestroy,
// ncclCommFinalize): not while an exception unwinds or the job is aborting, when queued NCCL kernels
// may never finish. Their resources are then left to the process's end, which follows at once.
bool device_teardown_may_wait();

// A point in time after which a wait has failed; limit_s <= 0 never expires.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  Deadline(Clock::time_point start, double limit_s) : start_(start), limit_s_(limit_s) {}
  static Deadline from_now(double limit_s) { return Deadline(Clock::now(), limit_s); }
  bool unlimited() const { return limit_s_ <= 0; }
  double limit_s() const { return limit_s_; }
  double elapsed_s(Clock::time_point now) const { return std::chrono::duration<double>(now - start_).count(); }
  bool expired(Clock::time_point now) const { return !unlimited() && elapsed_s(now) > limit_s_; }

 private:
  Clock::time_point start_;
  double limit_s_;
};

// Pause before poll number `attempt` (0-based): none for the first kSpinPolls (short waits stay
// fast), then doubling from 1 us up to kMaxPause: a long wait costs a few thousand wake-ups a
// second, not a core.
constexpr int kSpinPolls = 64;
constexpr std::chrono::microseconds kMaxPause{200};
inline std::chrono::microseconds poll_pause(int attempt) {
  if (attempt < kSpinPolls) return std::chrono::microseconds{0};
  const int doublings = std::min(attempt - kSpinPolls, 16);
  return std::min(kMaxPause, std::chrono::microseconds{int64_t(1) << doublings});
}

enum class PollState { pending, done, failed };
enum class WaitResult { done, failed, expired };

// Calls poll() until it is no longer pending or `deadline` passes, pausing per poll_pause between
// calls. `sleep` is injectable for tests.
template <class Poll, class Sleep>
WaitResult poll_until(const Deadline& deadline, Poll&& poll, Sleep&& sleep) {
  for (int attempt = 0;; ++attempt) {
    const PollState s = poll();
    if (s == PollState::done) return WaitResult::done;
    if (s == PollState::failed) return WaitResult::failed;
    if (deadline.expired(Deadline::Clock::now())) return WaitResult::expired;
    const auto pause = poll_pause(attempt);
    if (pause.count() > 0) sleep(pause); else std::this_thread::yield();
  }
}
template <class Poll>
WaitResult poll_until(const Deadline& deadline, Poll&& poll) {
  return poll_until(deadline, poll, [](std::chrono::microseconds d) { std::this_thread::sleep_for(d); });
}

}  // namespace moe
