// Activity context, the watchdog thread, abort hooks, the signal thread and MOE_FAULT (see
// watchdog.hpp). The hot path (ActivityScope, BlockingWait) is relaxed atomic loads and stores on
// this process's globals plus one steady-clock read per outermost wait; the watchdog thread polls.
#include "core/watchdog.hpp"

#include <pthread.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/error.hpp"

namespace moe {
namespace {

// ---- activity (written by the main thread, read by the watchdog and signal threads) ----
std::atomic<const char*> g_phase{nullptr};
std::atomic<int> g_fields[3] = {{-1}, {-1}, {-1}};   // layer, step, chunk
std::mutex g_strategy_mu;
std::string g_strategy;

// ---- the current outermost blocking wait ----
std::atomic<int64_t> g_wait_since_ns{0};              // 0: not waiting
std::atomic<const std::vector<int>*> g_wait_group{nullptr};
std::atomic<int> g_wait_peer{-1};
std::atomic<int> g_wait_collective_size{0};

// ---- watchdog ----
std::atomic<int64_t> g_timeout_ns{0};
std::atomic<int> g_world_rank{0};
std::mutex g_thread_mu;
std::condition_variable g_thread_cv;
std::thread g_thread;
bool g_thread_stop = false;

// ---- abort ----
std::mutex g_hooks_mu;
std::map<int, std::function<void(const std::string&)>> g_hooks;
int g_next_hook = 0;
std::function<void(int)> g_abort_fn;
std::atomic<bool> g_aborting{false};

// ---- fault ----
std::atomic<bool> g_fault_armed{false};
FaultSpec g_fault;
std::string g_fault_text;

// The coarse monotonic clock (a few ms resolution, no syscall): ample for timeouts of seconds and
// cheap enough to read at every blocking call. Never 0 once the machine is up.
int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string field_text(int v) { return v < 0 ? "-" : std::to_string(v); }

void check_fault();

void watchdog_loop() {
  std::unique_lock<std::mutex> lock(g_thread_mu);
  while (!g_thread_stop) {
    const int64_t timeout = g_timeout_ns.load(std::memory_order_relaxed);
    // Poll at a tenth of the timeout (10 ms .. 1 s): detection within timeout + 1 s.
    const int64_t poll_ns = std::min<int64_t>(1000000000, std::max<int64_t>(10000000, timeout / 10));
    g_thread_cv.wait_for(lock, std::chrono::nanoseconds(poll_ns));
    if (g_thread_stop || timeout <= 0) continue;
    const int64_t since = g_wait_since_ns.load(std::memory_order_acquire);
    if (since == 0) continue;
    const int64_t waited = now_ns() - since;
    if (waited < timeout) continue;
    lock.unlock();
    // Rank 0 speaks for the job: any other rank gives it two seconds (it usually waits in the same
    // collective and may have partial results to write) before reporting itself.
    if (g_world_rank.load() != 0) {
      std::this_thread::sleep_for(std::chrono::seconds(2));
      if (g_wait_since_ns.load(std::memory_order_acquire) != since) {
        lock.lock();
        continue;
      }
    }
    watchdog::abort_job(watchdog::timeout_message(timeout / 1e9), 1);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
ActivityScope::ActivityScope(const char* phase) : which_(0) {
  // One writer (the main thread): a load and a store, no read-modify-write.
  prev_phase_ = g_phase.load(std::memory_order_relaxed);
  g_phase.store(phase, std::memory_order_relaxed);
  if (g_fault_armed.load(std::memory_order_relaxed)) {
    try {
      check_fault();
    } catch (...) {
      g_phase.store(prev_phase_, std::memory_order_relaxed);
      throw;
    }
  }
}

ActivityScope::ActivityScope(ActivityField field, int value) : which_(1 + static_cast<int>(field)) {
  prev_value_ = g_fields[which_ - 1].load(std::memory_order_relaxed);
  g_fields[which_ - 1].store(value, std::memory_order_relaxed);
  if (field == ActivityField::step && g_fault_armed.load(std::memory_order_relaxed)) {
    try {
      check_fault();
    } catch (...) {
      g_fields[which_ - 1].store(prev_value_, std::memory_order_relaxed);
      throw;
    }
  }
}

ActivityScope::~ActivityScope() {
  if (which_ == 0)
    g_phase.store(prev_phase_, std::memory_order_relaxed);
  else
    g_fields[which_ - 1].store(prev_value_, std::memory_order_relaxed);
}

void set_activity_strategy(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_strategy_mu);
  g_strategy = name;
}

std::string describe_activity() {
  std::string strategy;
  {
    std::lock_guard<std::mutex> lock(g_strategy_mu);
    strategy = g_strategy;
  }
  const char* phase = g_phase.load(std::memory_order_relaxed);
  std::ostringstream os;
  os << (phase ? phase : "start-up") << " (strategy " << (strategy.empty() ? "-" : strategy) << ", layer "
     << field_text(g_fields[0].load(std::memory_order_relaxed)) << ", step "
     << field_text(g_fields[1].load(std::memory_order_relaxed)) << ", chunk "
     << field_text(g_fields[2].load(std::memory_order_relaxed)) << ")";
  return os.str();
}

// ---------------------------------------------------------------------------------------------
BlockingWait::BlockingWait(const std::vector<int>& group_world_ranks) {
  if (g_wait_since_ns.load(std::memory_order_relaxed) != 0) return;  // nested: the outer wait counts
  outer_ = true;
  g_wait_group.store(&group_world_ranks, std::memory_order_relaxed);
  g_wait_peer.store(-1, std::memory_order_relaxed);
  g_wait_collective_size.store(0, std::memory_order_relaxed);
  g_wait_since_ns.store(now_ns(), std::memory_order_release);
}

BlockingWait::BlockingWait(int peer_world_rank) {
  if (g_wait_since_ns.load(std::memory_order_relaxed) != 0) return;
  outer_ = true;
  g_wait_group.store(nullptr, std::memory_order_relaxed);
  g_wait_peer.store(peer_world_rank, std::memory_order_relaxed);
  g_wait_collective_size.store(0, std::memory_order_relaxed);
  g_wait_since_ns.store(now_ns(), std::memory_order_release);
}

BlockingWait::BlockingWait(CollectiveOver c) {
  if (g_wait_since_ns.load(std::memory_order_relaxed) != 0) return;
  outer_ = true;
  g_wait_group.store(nullptr, std::memory_order_relaxed);
  g_wait_peer.store(-1, std::memory_order_relaxed);
  g_wait_collective_size.store(c.num_ranks, std::memory_order_relaxed);
  g_wait_since_ns.store(now_ns(), std::memory_order_release);
}

BlockingWait::BlockingWait(DeviceStream) : BlockingWait(CollectiveOver{-1}) {}

BlockingWait::~BlockingWait() {
  if (outer_) g_wait_since_ns.store(0, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
namespace watchdog {

void start(double timeout_s, int world_rank) {
  MOE_REQUIRE(timeout_s >= 0, "watchdog timeout must not be negative");
  g_world_rank.store(world_rank);
  g_timeout_ns.store(static_cast<int64_t>(timeout_s * 1e9));
  std::lock_guard<std::mutex> lock(g_thread_mu);
  if (!g_thread.joinable() && timeout_s > 0) {
    g_thread_stop = false;
    g_thread = std::thread(watchdog_loop);
  }
  g_thread_cv.notify_all();
}

void stop() {
  {
    std::lock_guard<std::mutex> lock(g_thread_mu);
    g_thread_stop = true;
    g_thread_cv.notify_all();
  }
  if (g_thread.joinable()) g_thread.join();
}

double timeout_s() { return g_timeout_ns.load() / 1e9; }
int world_rank() { return g_world_rank.load(); }

void set_abort_function(std::function<void(int)> f) {
  std::lock_guard<std::mutex> lock(g_hooks_mu);
  g_abort_fn = std::move(f);
}

int add_abort_hook(std::function<void(const std::string&)> hook) {
  std::lock_guard<std::mutex> lock(g_hooks_mu);
  g_hooks[g_next_hook] = std::move(hook);
  return g_next_hook++;
}

void remove_abort_hook(int id) {
  std::lock_guard<std::mutex> lock(g_hooks_mu);
  g_hooks.erase(id);
}

bool aborting() { return g_aborting.load(); }

void abort_job(const std::string& message, int code) {
  if (g_aborting.exchange(true)) {
    // Another thread is already ending the job; it will take this process with it.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (!message.empty()) {
    const std::string line = message + "\n";
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  }
  std::vector<std::function<void(const std::string&)>> hooks;
  std::function<void(int)> abort_fn;
  {
    std::lock_guard<std::mutex> lock(g_hooks_mu);
    for (auto& [id, h] : g_hooks) hooks.push_back(h);
    abort_fn = g_abort_fn;
  }
  for (auto& h : hooks) {
    try {
      h(message);
    } catch (const std::exception& e) {  // a failing hook must not keep the job alive
      const std::string line = "[rank " + std::to_string(g_world_rank.load()) + "] while aborting: " + e.what() + "\n";
      (void)!::write(STDERR_FILENO, line.data(), line.size());
    } catch (...) {
    }
  }
  std::fflush(stdout);
  std::fflush(stderr);
  if (abort_fn) abort_fn(code);
  std::_Exit(code);
}

std::string timeout_message(double timeout_s) {
  std::ostringstream os;
  os << "[rank " << g_world_rank.load() << "] timeout after " << timeout_s << " s in " << describe_activity();
  const std::vector<int>* group = g_wait_group.load(std::memory_order_relaxed);
  const int peer = g_wait_peer.load(std::memory_order_relaxed);
  const int over = g_wait_collective_size.load(std::memory_order_relaxed);
  const int me = g_world_rank.load();
  if (peer >= 0) {
    os << " waiting for ranks [" << peer << "]";
  } else if (group) {
    os << " waiting for ranks [";
    bool first = true;
    for (int r : *group) {
      if (r == me) continue;
      os << (first ? "" : ", ") << r;
      first = false;
    }
    os << "] (a collective over " << group->size() << " ranks; which of them is late is not known)";
  } else if (over < 0) {
    os << " waiting for a device stream (the peers of its queued communication are not known here)";
  } else {
    os << " waiting in a collective over " << over << " ranks";
  }
  return os.str();
}

void install_signal_thread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) return;
    const int rank = g_world_rank.load();
    const std::string where = describe_activity();
    const std::string name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    // Rank 0 speaks for the job. Any other rank gives rank 0 a moment (it usually got the same
    // signal) and speaks for itself only when it is still alive after that.
    if (rank != 0) std::this_thread::sleep_for(std::chrono::seconds(2));
    // mpirun also sends SIGTERM to the survivors when a rank failed: say both.
    abort_job((rank == 0 ? "moe-bench: " : "[rank " + std::to_string(rank) + "] moe-bench: ") + "interrupted by " + name +
                  (sig == SIGTERM ? " (a time limit, a kill, or the launcher ending the job after a rank failed)" : "") +
                  " in " + where,
              128 + sig);
  }).detach();
}

}  // namespace watchdog

// ---------------------------------------------------------------------------------------------
namespace {

const char* const kFaultPhases[] = {"setup", "barrier", "forward", "attention", "gate", "dispatch", "expert", "combine",
                                    "tp_allreduce", "pp_transfer", "other", "checked_pass", "gather_output",
                                    "verification", "results"};

void check_fault() {
  if (!g_fault_armed.load(std::memory_order_relaxed)) return;
  const char* phase = g_phase.load(std::memory_order_relaxed);
  if (!phase || g_fault.phase != phase) return;
  if (g_fault.step >= 0 && g_fields[1].load(std::memory_order_relaxed) != g_fault.step) return;
  if (g_fault.layer >= 0 && g_fields[0].load(std::memory_order_relaxed) != g_fault.layer) return;
  g_fault_armed.store(false);
  const std::string where = describe_activity();
  const std::string note = "[rank " + std::to_string(g_world_rank.load()) + "] MOE_FAULT (test only): " + g_fault.action +
                           " in " + where + "\n";
  if (g_fault.action == "throw") throw Error("injected fault MOE_FAULT=" + g_fault_text + " in " + where);
  (void)!::write(STDERR_FILENO, note.data(), note.size());
  if (g_fault.action == "crash") std::abort();
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // hang
}

int parse_fault_int(const std::string& key, const std::string& value) {
  size_t used = 0;
  long v = -1;
  try {
    v = std::stol(value, &used);
  } catch (...) {
    used = 0;
  }
  if (used != value.size() || value.empty() || v < 0 || v > 1000000000)
    throw ConfigError("MOE_FAULT", key + " must be a non-negative integer, got '" + value + "'");
  return static_cast<int>(v);
}

}  // namespace

FaultSpec parse_fault_spec(const std::string& text) {
  FaultSpec f;
  const std::string expected = " (expected rank:R,phase:P[,step:K][,layer:L],action:hang|crash|throw)";
  std::stringstream ss(text);
  std::string item;
  std::map<std::string, std::string> seen;
  while (std::getline(ss, item, ',')) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) throw ConfigError("MOE_FAULT", "'" + item + "' is not key:value" + expected);
    const std::string key = item.substr(0, colon), value = item.substr(colon + 1);
    if (!seen.emplace(key, value).second) throw ConfigError("MOE_FAULT", "'" + key + "' is given twice");
    if (key == "rank") {
      f.rank = parse_fault_int(key, value);
    } else if (key == "step") {
      f.step = parse_fault_int(key, value);
    } else if (key == "layer") {
      f.layer = parse_fault_int(key, value);
    } else if (key == "phase") {
      bool known = false;
      std::string names;
      for (const char* p : kFaultPhases) {
        known = known || value == p;
        names += std::string(names.empty() ? "" : ", ") + p;
      }
      if (!known) throw ConfigError("MOE_FAULT", "unknown phase '" + value + "' (one of " + names + ")");
      f.phase = value;
    } else if (key == "action") {
      if (value != "hang" && value != "crash" && value != "throw")
        throw ConfigError("MOE_FAULT", "action must be hang, crash or throw, got '" + value + "'");
      f.action = value;
    } else {
      throw ConfigError("MOE_FAULT", "unknown key '" + key + "'" + expected);
    }
  }
  for (const char* key : {"rank", "phase", "action"})
    if (!seen.count(key)) throw ConfigError("MOE_FAULT", std::string("'") + key + "' is missing" + expected);
  return f;
}

std::string arm_fault_from_environment(int world_rank) {
  const char* env = std::getenv("MOE_FAULT");
  if (!env || !*env) return "";
  g_fault = parse_fault_spec(env);
  g_fault_text = env;
  if (g_fault.rank == world_rank) g_fault_armed.store(true);
  return g_fault_text;
}

}  // namespace moe
