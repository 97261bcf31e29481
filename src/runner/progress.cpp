// Progress line: formatting, pacing (in place vs. every interval) and the ETA.
#include "runner/progress.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace moe {
namespace {

double steady_now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string duration_text(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
  }
  return buf;
}

}  // namespace

ProgressOptions progress_options_for(int rank, bool quiet) {
  ProgressOptions o;
  o.enabled = rank == 0 && !quiet;
  o.in_place = isatty(STDERR_FILENO) == 1;
  if (const char* env = std::getenv("MOE_PROGRESS_INTERVAL_S")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && v >= 0) o.first_after_s = o.interval_s = o.refresh_s = v;
  }
  return o;
}

Progress::Progress(std::ostream& out, ProgressOptions options, std::function<double()> now_s)
    : out_(out), options_(options), now_s_(now_s ? std::move(now_s) : steady_now_s) {
  start_s_ = now_s_();
}

Progress::~Progress() { finish(); }

void Progress::begin_run(int num_strategies, long units_per_strategy) {
  num_strategies_ = num_strategies > 0 ? num_strategies : 1;
  units_per_strategy_ = units_per_strategy > 0 ? units_per_strategy : 1;
}

void Progress::begin_strategy(int strategy_idx, const std::string& name) {
  strategy_idx_ = strategy_idx;
  strategy_ = name;
  units_done_ = long(strategy_idx) * units_per_strategy_;
  what_ = "build";
  iteration_ = iterations_ = step_ = steps_ = 0;
}

std::string Progress::line(double t) const {
  const double elapsed = t - start_s_;
  const long total = long(num_strategies_) * units_per_strategy_;
  std::string s = "moe-bench: " + strategy_ + " (" + std::to_string(strategy_idx_ + 1) + "/" +
                  std::to_string(num_strategies_) + ") " + what_;
  if (iterations_ > 0) s += " iteration " + std::to_string(iteration_) + "/" + std::to_string(iterations_);
  if (steps_ > 0) s += " step " + std::to_string(step_) + "/" + std::to_string(steps_);
  s += "  elapsed " + duration_text(elapsed);
  if (units_done_ > 0 && units_done_ < total)
    s += "  ETA " + duration_text(elapsed / double(units_done_) * double(total - units_done_));
  return s;
}

void Progress::step_done(const char* what, int iteration, int iterations, int step, int steps) {
  ++units_done_;
  what_ = what;
  iteration_ = iteration;
  iterations_ = iterations;
  step_ = step;
  steps_ = steps;
  if (!options_.enabled) return;
  const double t = now_s_();
  if (t - start_s_ < options_.first_after_s) return;
  const double gap = options_.in_place ? options_.refresh_s : options_.interval_s;
  if (last_print_s_ >= 0 && t - last_print_s_ < gap) return;
  last_print_s_ = t;
  const std::string text = line(t);
  if (options_.in_place) {
    // Pad over a longer previous line; no newline until finish().
    out_ << '\r' << text << std::string(last_width_ > text.size() ? last_width_ - text.size() : 0, ' ') << std::flush;
    last_width_ = text.size();
    line_open_ = true;
  } else {
    out_ << text << '\n' << std::flush;
  }
}

void Progress::finish() {
  if (!line_open_) return;
  out_ << '\r' << std::string(last_width_, ' ') << '\r' << std::flush;  // the table follows on a clean line
  line_open_ = false;
  last_width_ = 0;
}

}  // namespace moe
