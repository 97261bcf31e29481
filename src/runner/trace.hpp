// Per-rank trace of the stages of a run in Chrome trace-event JSON (Perfetto, chrome://tracing):
// one process per rank, one thread per stream, one complete ("X") event per span. Every rank
// records its own spans; rank 0 gathers them and writes the file.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "schedule/phase.hpp"
#include "topology/topology.hpp"

namespace moe {

class TraceRecorder {
 public:
  // The spans of one step of strategy `strategy` (index into `names`), step 0 = prefill, k = decode
  // step k; `step_origin_ms` is the step's origin on this rank's clock since the run's origin.
  void add_step(int strategy, int step, double step_origin_ms, const StepSpans& spans);
  void add_strategy_name(const std::string& name) { names_.push_back(name); }
  // Gathers every rank's spans on world rank 0 and returns the trace there (null elsewhere). Collective.
  nlohmann::ordered_json gather(Comm& world, const Topology& topo) const;

 private:
  std::vector<double> fields_;   // kFields per span
  std::vector<std::string> names_;
};

// The stage name of a trace field code and back (the stage names travel as codes).
int trace_stage_code(const char* stage);
const char* trace_stage_name(int code);

}  // namespace moe
