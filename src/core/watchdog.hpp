// Failure handling shared by every backend: what this rank is doing (activity: phase, strategy,
// layer, step, chunk), a watchdog thread that bounds every blocking wait by run.timeout_s and
// aborts the job with a message naming where it stuck, abort hooks (ncclCommAbort, partial
// results), and test-only fault injection (MOE_FAULT). Nothing here calls MPI or CUDA directly.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace moe {

// ---- activity: set by the runner and the strategies with RAII scopes ----
enum class ActivityField { layer, step, chunk };

// Sets one field of this process's activity for the scope, restoring the previous value after.
// `ActivityScope a("dispatch")` names the phase; `ActivityScope a(ActivityField::layer, l)` the
// layer. Entering a phase or step checks MOE_FAULT. Cost: a few relaxed atomic stores.
class ActivityScope {
 public:
  explicit ActivityScope(const char* phase);   // a static string
  ActivityScope(ActivityField field, int value);
  ~ActivityScope();
  ActivityScope(const ActivityScope&) = delete;
  ActivityScope& operator=(const ActivityScope&) = delete;

 private:
  int which_;          // 0 phase, else 1 + ActivityField
  const char* prev_phase_ = nullptr;
  int prev_value_ = -1;
};

// The strategy being run ("" outside one). Set by the runner.
void set_activity_strategy(const std::string& name);
// "PHASE (strategy S, layer l, step k, chunk c)"; "-" for a field not set.
std::string describe_activity();

// ---- blocking waits ----
// Constructed by a blocking communication call around its wait. While one is alive the watchdog
// measures how long this rank has waited; past the timeout it prints
//   [rank r] timeout after T s in PHASE (strategy S, layer l, step k, chunk c) waiting for ranks [...]
// runs the abort hooks and aborts the job. Nested waits keep the outer one's start.
class BlockingWait {
 public:
  // A collective over the ranks `group_world_ranks` (world rank numbers; must outlive the wait).
  explicit BlockingWait(const std::vector<int>& group_world_ranks);
  // A point-to-point wait for one world rank.
  explicit BlockingWait(int peer_world_rank);
  // A collective whose members are not known here: "waiting in a collective over N ranks".
  struct CollectiveOver {
    int num_ranks;
  };
  explicit BlockingWait(CollectiveOver c);
  // A wait for a device stream whose queued communication has peers not known here.
  struct DeviceStream {};
  explicit BlockingWait(DeviceStream);
  ~BlockingWait();
  BlockingWait(const BlockingWait&) = delete;
  BlockingWait& operator=(const BlockingWait&) = delete;

 private:
  bool outer_ = false;
};

namespace watchdog {

// Starts (or re-arms) the watchdog thread for this process: waits longer than `timeout_s` abort
// the job; 0 disables. `world_rank` names the rank in messages.
void start(double timeout_s, int world_rank);
void stop();
double timeout_s();
int world_rank();

// The final action: end every rank with `code` (MpiSession registers MPI_Abort; default _Exit).
void set_abort_function(std::function<void(int code)> f);
// Run before the abort with the abort's message (ncclCommAbort, rank 0's partial results,
// temporary files). Returns an id for remove_abort_hook.
int add_abort_hook(std::function<void(const std::string& reason)> hook);
void remove_abort_hook(int id);
// Prints `message` (one line, to stderr), runs the abort hooks once, then the abort function.
// Safe from any thread; a second caller waits for the first.
[[noreturn]] void abort_job(const std::string& message, int code);
// True once abort_job has started (on any thread): teardown must not wait on anything.
bool aborting();

// The timeout message for the current wait and activity, `timeout_s` the limit (exposed for tests).
std::string timeout_message(double timeout_s);

// ---- signals ----
// Blocks SIGINT and SIGTERM in this thread (call before any other thread exists, so every
// thread inherits the mask) and starts a thread that receives them: it prints on rank 0 (or on
// the rank that got it, when not every rank did) which strategy and phase was interrupted, runs
// the abort hooks and ends the job with 128 + signal.
void install_signal_thread();

}  // namespace watchdog

// ---- fault injection (test only) ----
// MOE_FAULT=rank:R,phase:P[,step:K][,layer:L],action:hang|crash|throw. When this rank enters
// phase P (at step K and layer L when given) for the first time: hang (sleep forever), crash
// (abort()) or throw an Error. Parses the environment; throws ConfigError("MOE_FAULT", ...) on a
// malformed value. Returns a description ("" when unset).
std::string arm_fault_from_environment(int world_rank);
// Parser (exposed for tests): throws ConfigError naming MOE_FAULT and the bad field.
struct FaultSpec {
  int rank = -1;
  std::string phase;
  int step = -1;       // -1: any
  int layer = -1;      // -1: any
  std::string action;  // hang | crash | throw
};
FaultSpec parse_fault_spec(const std::string& text);

}  // namespace moe
