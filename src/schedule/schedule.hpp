// The schedule of one step: every stage (attention, gate, count exchange, dispatch, experts,
// combine, ...) per layer and per part (chunk or micro-batch), in issue order, with its stream and
// the stages it waits for. Built here, once, from the strategy config; the strategies execute it,
// the simulator replays it with a duration per stage, and the trace and the overlap metric come
// from the spans of its stages. Nothing else restates the order.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/config.hpp"

#include <nlohmann/json.hpp>

namespace moe {

enum class OverlapMode { none, chunked, two_batch, pipelined };
OverlapMode parse_overlap(const std::string& s);   // config spelling; throws on anything else
const char* overlap_name(OverlapMode m);

enum class StageKind {
  attention,      // compute: rms, attention, residual (h = x + Attn(rms(x)))
  gate,           // compute: rms, gate logits, routing of the part's tokens
  counts,         // host: the layer's one count exchange (every part's and slot's rows, global load)
  pack,           // compute: dispatch plan, gather of the rows to send
  dispatch,       // communication: all-to-all of the packed rows to the experts' ranks
  experts,        // compute: the rank's experts on the rows received (source by source as they arrive)
  combine,        // communication: all-to-all of the expert outputs back to their tokens' ranks
  unpack,         // compute: weighted sum of the returned rows, residual (y = h + MoE(rms(h)))
  moe_local,      // compute (tp_pp): gate, routing and the rank's expert shards on the micro-batch
  tp_allreduce,   // communication (tp_pp, blocking): all-reduce of partial outputs
  pp_recv,        // communication (tp_pp): micro-batch from the previous pipeline stage
  pp_send,        // communication (tp_pp): micro-batch to the next pipeline stage
};
const char* stage_name(StageKind k);
bool is_communication(StageKind k);   // runs on a communication stream (or, blocking, on the network)

struct Stage {
  StageKind kind = StageKind::attention;
  int layer = 0;               // model layer (tp_pp: the stage's local layer index), -1 for none
  int part = -1;               // chunk or micro-batch, -1: the whole layer
  Stream stream = Stream::compute;
  std::vector<int> after;      // indices of earlier stages whose results this stage uses
};

// Token rows of one part of a rank's step.
struct PartRows {
  int64_t row0 = 0, rows = 0;
  int seq0 = 0, seqs = 0;      // local sequences, when the part holds whole sequences (else seqs = 0)
};

struct Schedule {
  OverlapMode mode = OverlapMode::none;
  std::vector<Stage> stages;
  std::vector<PartRows> parts;
  // ep: attention and gate run per part (whole sequences; the part goes on to the next layer as soon
  // as its own combine is back); false: once per layer over every part.
  bool front_per_part = false;
  // tp_pp: pipeline transfers are posted, the next micro-batch's receive ahead of the compute.
  bool posted_transfers = false;
  std::string describe() const;   // one line per stage, for tests and --print-schedule
  // FNV-1a 64 of describe() and the parts, in hex: equal digests = the same stage list.
  std::string digest() const;
  // {"parts", "stages", "digest"}: what results report of the schedule a step ran or was simulated with.
  nlohmann::ordered_json summary() const;
};

// Rows of the step's largest part (at least 1): what per-part buffers are sized for.
int64_t max_part_rows(const Schedule& s);

// The same stages with every stage after its predecessor (program order): what the step would be
// with nothing overlapped (mode none, same parts).
Schedule serialized(const Schedule& s);

// ep: `local_seqs` sequences of `new_len` tokens on each rank.
//  none:      spec.chunks token chunks in program order (dispatch, experts, combine one after another);
//  chunked:   the same chunks pipelined (dispatch of c+1 | experts of c | combine of c-1); with
//             immediate_routing and at least `chunks` sequences, chunks are whole sequences and run
//             attention and gate per chunk (they flow through the layers without a layer barrier);
//  two_batch: two micro-batches of whole sequences: the attention and gate of one run while the
//             other's dispatch or combine is in flight. Every rank has the same parts (some may be empty).
Schedule build_ep_schedule(const StrategyConfig& spec, int layers, bool attention, int local_seqs, int new_len);

// The schedule of an ep step of `new_len` tokens per sequence (prefill: prompt_tokens, decode: 1):
// what EpStrategy executes and what the simulator replays.
Schedule ep_step_schedule(const Config& c, const StrategyConfig& spec, int new_len);

// tp_pp on one pipeline stage of `num_stages`, `layers_per_stage` layers, `microbatches` micro-batches.
// none: blocking stage-to-stage transfers; pipelined: the receive of micro-batch m+1 is posted
// before the compute of m and sends are posted (all-reduces stay blocking).
Schedule build_tp_pp_schedule(const StrategyConfig& spec, int stage, int num_stages, int layers_per_stage,
                              bool attention);
// The schedule of pipeline stage `stage` of a tp_pp strategy (the same for prefill and decode).
Schedule tp_pp_stage_schedule(const Config& c, const StrategyConfig& spec, int stage);

}  // namespace moe
