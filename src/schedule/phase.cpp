// Phase names, span recording and the overlap arithmetic on spans.
#include "schedule/phase.hpp"

#include <algorithm>

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

namespace {
// Sorted, merged, non-empty intervals.
std::vector<Interval> merged(std::vector<Interval> v) {
  std::sort(v.begin(), v.end(), [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
  std::vector<Interval> out;
  for (const Interval& i : v) {
    if (i.end <= i.begin) continue;
    if (!out.empty() && i.begin <= out.back().end) out.back().end = std::max(out.back().end, i.end);
    else out.push_back(i);
  }
  return out;
}
}  // namespace

double union_ms(std::vector<Interval> v) {
  double t = 0;
  for (const Interval& i : merged(std::move(v))) t += i.end - i.begin;
  return t;
}

double uncovered_ms(std::vector<Interval> a, std::vector<Interval> b) {
  const std::vector<Interval> ma = merged(std::move(a)), mb = merged(std::move(b));
  double covered = 0;
  size_t j = 0;
  for (const Interval& i : ma) {
    while (j < mb.size() && mb[j].end <= i.begin) ++j;
    for (size_t k = j; k < mb.size() && mb[k].begin < i.end; ++k)
      covered += std::min(i.end, mb[k].end) - std::max(i.begin, mb[k].begin);
  }
  return union_ms(ma) - covered;
}

std::vector<double> uncovered_each_ms(const std::vector<Interval>& items, std::vector<Interval> cover) {
  const std::vector<Interval> mc = merged(std::move(cover));
  std::vector<double> out;
  out.reserve(items.size());
  for (const Interval& i : items) {
    double covered = 0;
    // First merged interval ending after i.begin (they are sorted and disjoint).
    auto it = std::upper_bound(mc.begin(), mc.end(), i.begin, [](double t, const Interval& c) { return t < c.end; });
    for (; it != mc.end() && it->begin < i.end; ++it) covered += std::min(i.end, it->end) - std::max(i.begin, it->begin);
    out.push_back(std::max(0.0, i.end - i.begin - covered));
  }
  return out;
}

void PhaseTimer::start_step() {
  origin_ = compute_.record(Stream::compute);
  has_origin_ = true;
}

void PhaseTimer::begin(Phase p, SpanTag tag) {
  MOE_REQUIRE(!open_, std::string("phase ") + phase_name(p) + " begins inside another phase");
  open_ = true;
  compute_.range_push(tag.stage[0] ? tag.stage : phase_name(p));
  spans_.push_back(Span{p, Stream::compute, false, compute_.record(Stream::compute), Event{}, tag});
}

void PhaseTimer::end() {
  MOE_REQUIRE(open_ && !spans_.empty(), "phase end without begin");
  spans_.back().stop = compute_.record(Stream::compute);
  compute_.range_pop();
  open_ = false;
}

void PhaseTimer::communication(Phase p, Stream s, Event start, Event stop, SpanTag tag) {
  spans_.push_back(Span{p, s, true, start, stop, tag});
}

void PhaseTimer::begin_host(Phase p) {
  if (host_depth_++ > 0) return;
  host_phase_ = p;
  host_start_ = std::chrono::steady_clock::now();
}

void PhaseTimer::end_host() {
  MOE_REQUIRE(host_depth_ > 0, "host work end without begin");
  if (--host_depth_ > 0) return;
  host_[static_cast<int>(host_phase_)] +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - host_start_).count();
}

StepSpans PhaseTimer::finish_step() {
  MOE_REQUIRE(!open_, "finish_step inside an open phase");
  MOE_REQUIRE(host_depth_ == 0, "finish_step inside open host work");
  compute_.synchronize_all();
  StepSpans out;
  if (!spans_.empty()) {
    const Event origin = has_origin_ ? origin_ : spans_.front().start;
    std::vector<Interval> all, comm, work;
    std::vector<Interval> times;
    for (const Span& s : spans_) {
      double a = compute_.elapsed_ms(origin, s.start), b = compute_.elapsed_ms(origin, s.stop);
      b = std::max(a, b);
      times.push_back({a, b});
      all.push_back({a, b});
      (s.communication ? comm : work).push_back({a, b});
      if (keep_) out.spans.push_back(SpanRecord{s.phase, s.stream, s.communication, a, b, s.tag});
    }
    const std::vector<double> exposed = uncovered_each_ms(times, work);
    for (size_t i = 0; i < spans_.size(); ++i) {
      const Interval t = times[i];
      out.phases[static_cast<int>(spans_[i].phase)] += spans_[i].communication ? exposed[i] : t.end - t.begin;
    }
    out.busy_ms = union_ms(all);
    out.comm_ms = union_ms(comm);
    out.exposed_comm_ms = uncovered_ms(comm, work);
  }
  out.host = host_;
  host_ = {};
  spans_.clear();
  has_origin_ = false;
  compute_.reset_events();
  return out;
}

}  // namespace moe
