// Chrome trace-event output of the stage spans (see trace.hpp).
#include "runner/trace.hpp"

#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "schedule/schedule.hpp"

namespace moe {
namespace {

// Per span: strategy, step, stage code, phase, stream, communication, layer, part, bytes, start, end (µs).
constexpr int kFields = 11;

const char* const kExtraStages[] = {"plan", "pp_feedback"};
constexpr int kNumStageKinds = static_cast<int>(StageKind::pp_send) + 1;

const char* stream_name(int s) {
  switch (static_cast<Stream>(s)) {
    case Stream::compute: return "compute";
    case Stream::send: return "send";
    case Stream::recv: return "recv";
  }
  return "?";
}

}  // namespace

int trace_stage_code(const char* stage) {
  for (int k = 0; k < kNumStageKinds; ++k)
    if (std::strcmp(stage, stage_name(static_cast<StageKind>(k))) == 0) return k;
  for (int i = 0; i < int(std::size(kExtraStages)); ++i)
    if (std::strcmp(stage, kExtraStages[i]) == 0) return kNumStageKinds + i;
  return -1;
}

const char* trace_stage_name(int code) {
  if (code >= 0 && code < kNumStageKinds) return stage_name(static_cast<StageKind>(code));
  if (code >= kNumStageKinds && code < kNumStageKinds + int(std::size(kExtraStages))) return kExtraStages[code - kNumStageKinds];
  return "other";
}

void TraceRecorder::add_step(int strategy, int step, double step_origin_ms, const StepSpans& spans) {
  for (const SpanRecord& s : spans.spans) {
    const double f[kFields] = {double(strategy), double(step), double(trace_stage_code(s.tag.stage)),
                               double(static_cast<int>(s.phase)), double(static_cast<int>(s.stream)),
                               s.communication ? 1.0 : 0.0, double(s.tag.layer), double(s.tag.part), double(s.tag.bytes),
                               (step_origin_ms + s.start_ms) * 1e3, (step_origin_ms + s.end_ms) * 1e3};
    fields_.insert(fields_.end(), f, f + kFields);
  }
}

nlohmann::ordered_json TraceRecorder::gather(Comm& world, const Topology& topo) const {
  // Span counts first, so that rank 0 knows whose spans are whose.
  const std::vector<double> counts = world.gather_host(std::vector<double>{double(fields_.size() / kFields)}, 0);
  const std::vector<double> all = world.gather_host(fields_, 0);
  if (world.rank() != 0) return nullptr;
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  for (int r = 0; r < world.size(); ++r) {
    const std::string pname = "rank " + std::to_string(r) + " (node " + std::to_string(topo.node_of(r)) + ")";
    events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", r}, {"tid", 0}, {"args", {{"name", pname}}}});
    events.push_back({{"name", "process_sort_index"}, {"ph", "M"}, {"pid", r}, {"tid", 0}, {"args", {{"sort_index", r}}}});
    for (int s = 0; s < kNumStreams; ++s)
      events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", r}, {"tid", s}, {"args", {{"name", stream_name(s)}}}});
  }
  size_t at = 0;
  for (int r = 0; r < world.size(); ++r) {
    const size_t n = static_cast<size_t>(counts.at(r));
    for (size_t i = 0; i < n; ++i, at += kFields) {
      const double* f = &all.at(at);
      const int strategy = static_cast<int>(f[0]);
      nlohmann::ordered_json args = {{"strategy", strategy < int(names_.size()) ? names_[strategy] : "?"},
                                     {"step", int(f[1])}, {"layer", int(f[6])}, {"part", int(f[7])}, {"communication", f[5] > 0},
                                     {"bytes", static_cast<int64_t>(f[8])}};
      events.push_back({{"name", trace_stage_name(int(f[2]))}, {"cat", phase_name(static_cast<Phase>(int(f[3])))},
                        {"ph", "X"}, {"pid", r}, {"tid", int(f[4])}, {"ts", std::round(f[9] * 1e3) / 1e3},
                        {"dur", std::round(std::max(0.0, f[10] - f[9]) * 1e3) / 1e3}, {"args", args}});
    }
  }
  return {{"displayTimeUnit", "ms"}, {"traceEvents", events},
          {"otherData", {{"producer", "moe-bench"}, {"time_origin", "barrier at the start of the run, per-rank steady clock"}}}};
}

}  // namespace moe
