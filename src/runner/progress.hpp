// The progress line of a long run: rank 0 writes it to stderr (strategy, warm-up / prefill / decode /
// check, iteration k/N, step, elapsed, ETA). On a terminal it is rewritten in place; otherwise (a
// pipe, mpirun's forwarding, a batch log) one line every interval. Nothing before `first_after_s`, so
// short runs print nothing; `--quiet` disables it. It never goes into the results JSON.
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace moe {

struct ProgressOptions {
  bool enabled = false;
  bool in_place = false;        // a terminal: '\r' rewrites, a cleared line at the end
  double first_after_s = 3;     // quiet for runs shorter than this
  double interval_s = 10;       // between lines when not in place
  double refresh_s = 0.5;       // between rewrites in place
};

// Options for this process: enabled on rank 0 unless quiet, in place when stderr is a terminal;
// MOE_PROGRESS_INTERVAL_S overrides both first_after_s and interval_s (tests use 0).
ProgressOptions progress_options_for(int rank, bool quiet);

class Progress {
 public:
  // `now_s` returns seconds on a monotonic clock (injectable for tests).
  Progress(std::ostream& out, ProgressOptions options, std::function<double()> now_s = {});
  ~Progress();

  // A run of `num_strategies` strategies, each `units_per_strategy` steps long (warm-up, measured and
  // checked prefills and decode steps): the ETA assumes every step of the rest takes the mean so far.
  void begin_run(int num_strategies, long units_per_strategy);
  void begin_strategy(int strategy_idx, const std::string& name);
  // One step done. `what`: "warm-up", "prefill", "decode" or "check"; iteration and step are 1-based
  // (0: not applicable).
  void step_done(const char* what, int iteration, int iterations, int step, int steps);
  void finish();   // ends an in-place line (no-op otherwise); the destructor calls it

  // The text of the current line at time `t` (no control characters).
  std::string line(double t) const;

 private:
  std::ostream& out_;
  ProgressOptions options_;
  std::function<double()> now_s_;
  double start_s_ = 0;
  double last_print_s_ = -1;
  int num_strategies_ = 1;
  long units_per_strategy_ = 1;
  long units_done_ = 0;
  int strategy_idx_ = 0;
  std::string strategy_;
  std::string what_;
  int iteration_ = 0, iterations_ = 0, step_ = 0, steps_ = 0;
  size_t last_width_ = 0;
  bool line_open_ = false;
};

}  // namespace moe
