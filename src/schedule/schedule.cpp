// Stage lists of the ep and tp_pp steps (see schedule.hpp).
#include "schedule/schedule.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.hpp"

namespace moe {

int64_t max_part_rows(const Schedule& s) {
  int64_t rows = 1;
  for (const PartRows& p : s.parts) rows = std::max(rows, p.rows);
  return rows;
}

OverlapMode parse_overlap(const std::string& s) {
  if (s == "none") return OverlapMode::none;
  if (s == "chunked") return OverlapMode::chunked;
  if (s == "two_batch") return OverlapMode::two_batch;
  if (s == "pipelined") return OverlapMode::pipelined;
  throw Error("unknown overlap mode '" + s + "' (none | chunked | two_batch | pipelined)");
}

const char* overlap_name(OverlapMode m) {
  switch (m) {
    case OverlapMode::none: return "none";
    case OverlapMode::chunked: return "chunked";
    case OverlapMode::two_batch: return "two_batch";
    case OverlapMode::pipelined: return "pipelined";
  }
  return "?";
}

const char* stage_name(StageKind k) {
  switch (k) {
    case StageKind::attention: return "attention";
    case StageKind::gate: return "gate";
    case StageKind::counts: return "counts";
    case StageKind::pack: return "pack";
    case StageKind::dispatch: return "dispatch";
    case StageKind::experts: return "experts";
    case StageKind::combine: return "combine";
    case StageKind::unpack: return "unpack";
    case StageKind::moe_local: return "moe_local";
    case StageKind::tp_allreduce: return "tp_allreduce";
    case StageKind::pp_recv: return "pp_recv";
    case StageKind::pp_send: return "pp_send";
  }
  return "?";
}

bool is_communication(StageKind k) {
  return k == StageKind::dispatch || k == StageKind::combine || k == StageKind::tp_allreduce ||
         k == StageKind::pp_recv || k == StageKind::pp_send || k == StageKind::counts;
}

std::string Schedule::describe() const {
  std::ostringstream o;
  for (size_t i = 0; i < stages.size(); ++i) {
    const Stage& s = stages[i];
    o << i << " " << stage_name(s.kind) << " layer " << s.layer << " part " << s.part << " stream "
      << static_cast<int>(s.stream) << " after";
    for (int a : s.after) o << " " << a;
    o << "\n";
  }
  return o.str();
}

std::string Schedule::digest() const {
  std::string text = describe();
  for (const PartRows& p : parts)
    text += std::to_string(p.row0) + " " + std::to_string(p.rows) + " " + std::to_string(p.seq0) + " " + std::to_string(p.seqs) + "\n";
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

nlohmann::ordered_json Schedule::summary() const {
  return {{"mode", overlap_name(mode)}, {"parts", parts.size()}, {"stages", stages.size()}, {"digest", digest()}};
}

Schedule serialized(const Schedule& s) {
  Schedule out = s;
  out.mode = OverlapMode::none;
  for (size_t i = 1; i < out.stages.size(); ++i) out.stages[i].after.push_back(static_cast<int>(i) - 1);
  return out;
}

Schedule ep_step_schedule(const Config& c, const StrategyConfig& spec, int new_len) {
  MOE_REQUIRE(kind_of(spec) == StrategyKind::ep && strategy_ranks(spec) > 0, "ep_step_schedule: not an ep strategy");
  // Attention is data parallel over every rank (ep x expert_tp): each owns an equal block of sequences.
  return build_ep_schedule(spec, c.model.layers, c.model.attention, c.workload.batch_sequences / strategy_ranks(spec),
                           new_len);
}

Schedule tp_pp_stage_schedule(const Config& c, const StrategyConfig& spec, int stage) {
  MOE_REQUIRE(kind_of(spec) == StrategyKind::tp_pp && spec.pp > 0, "tp_pp_stage_schedule: not a tp_pp strategy");
  return build_tp_pp_schedule(spec, stage, spec.pp, c.model.layers / spec.pp, c.model.attention);
}

namespace {

// Rows of every part. Whole sequences: part p holds sequences [S*p/P, S*(p+1)/P); token chunks:
// rows [R*p/P, R*(p+1)/P).
std::vector<PartRows> split_parts(int parts, bool whole_sequences, int local_seqs, int new_len) {
  std::vector<PartRows> out(parts);
  const int64_t rows = int64_t(local_seqs) * new_len;
  for (int p = 0; p < parts; ++p) {
    PartRows& r = out[p];
    if (whole_sequences) {
      r.seq0 = static_cast<int>(int64_t(local_seqs) * p / parts);
      r.seqs = static_cast<int>(int64_t(local_seqs) * (p + 1) / parts) - r.seq0;
      r.row0 = int64_t(r.seq0) * new_len;
      r.rows = int64_t(r.seqs) * new_len;
    } else {
      r.row0 = rows * p / parts;
      r.rows = rows * (p + 1) / parts - r.row0;
    }
  }
  return out;
}

class Builder {
 public:
  explicit Builder(Schedule& s) : s_(s) {}
  int add(StageKind k, int layer, int part, Stream stream, std::vector<int> after) {
    s_.stages.push_back(Stage{k, layer, part, stream, std::move(after)});
    return static_cast<int>(s_.stages.size()) - 1;
  }

 private:
  Schedule& s_;
};

}  // namespace

Schedule build_ep_schedule(const StrategyConfig& spec, int layers, bool attention, int local_seqs, int new_len) {
  MOE_REQUIRE(layers > 0 && local_seqs >= 0 && new_len > 0, "build_ep_schedule: bad shape");
  Schedule s;
  s.mode = parse_overlap(spec.overlap);
  MOE_REQUIRE(s.mode != OverlapMode::pipelined, "overlap 'pipelined' applies to tp_pp strategies");
  const int64_t rows = int64_t(local_seqs) * new_len;
  int parts = 1;
  bool whole = false;
  if (s.mode == OverlapMode::two_batch) {
    parts = 2;   // even with a single sequence: every rank issues the same transfers
    whole = true;
  } else {
    parts = static_cast<int>(std::min<int64_t>(spec.chunks, std::max<int64_t>(rows, 1)));
    whole = s.mode == OverlapMode::chunked && spec.immediate_routing && parts > 1 && local_seqs >= parts;
  }
  s.parts = split_parts(parts, whole, local_seqs, new_len);
  s.front_per_part = whole;
  const bool overlapped = s.mode != OverlapMode::none;

  Builder b(s);
  std::vector<int> unpack_of(parts, -1);   // previous layer's unpack stage per part
  std::vector<int> gate_of(parts, -1);
  // Attention and gate of part p (or of the whole layer, p = -1) in layer l.
  auto front = [&](int l, int p) {
    std::vector<int> dep;
    if (p >= 0) {
      if (unpack_of[p] >= 0) dep.push_back(unpack_of[p]);
    } else {
      for (int u : unpack_of)
        if (u >= 0) dep.push_back(u);
    }
    if (attention) dep = {b.add(StageKind::attention, l, p, Stream::compute, dep)};
    const int g = b.add(StageKind::gate, l, p, Stream::compute, dep);
    if (p >= 0) gate_of[p] = g;
    else std::fill(gate_of.begin(), gate_of.end(), g);
  };
  for (int l = 0; l < layers; ++l) {
    if (!s.front_per_part) front(l, -1);
    else if (l == 0 || !overlapped)
      for (int p = 0; p < parts; ++p) front(l, p);
    std::vector<int> gates = gate_of;
    std::sort(gates.begin(), gates.end());
    gates.erase(std::unique(gates.begin(), gates.end()), gates.end());
    const int counts = b.add(StageKind::counts, l, -1, Stream::compute, gates);
    std::vector<int> dispatch(parts), combine(parts);
    auto send_part = [&](int p) {
      const int k = b.add(StageKind::pack, l, p, Stream::compute, {counts});
      dispatch[p] = b.add(StageKind::dispatch, l, p, Stream::send, {k});
    };
    auto expert_part = [&](int p) {
      const int x = b.add(StageKind::experts, l, p, Stream::compute, {dispatch[p]});
      combine[p] = b.add(StageKind::combine, l, p, Stream::send, {x});
    };
    auto finish_part = [&](int p) {
      unpack_of[p] = b.add(StageKind::unpack, l, p, Stream::compute, {combine[p]});
      // Immediate routing: the part's next layer starts while the other parts are still in flight.
      if (s.front_per_part && overlapped && l + 1 < layers) front(l + 1, p);
    };
    if (!overlapped) {
      for (int p = 0; p < parts; ++p) {
        send_part(p);
        expert_part(p);
        finish_part(p);
      }
      continue;
    }
    // Compute order: pack 0; then per part c: pack c+1, experts c, unpack c-1; last unpack.
    send_part(0);
    for (int c = 0; c < parts; ++c) {
      if (c + 1 < parts) send_part(c + 1);
      expert_part(c);
      if (c > 0) finish_part(c - 1);
    }
    finish_part(parts - 1);
  }
  return s;
}

Schedule build_tp_pp_schedule(const StrategyConfig& spec, int stage, int num_stages, int layers_per_stage,
                              bool attention) {
  MOE_REQUIRE(num_stages > 0 && stage >= 0 && stage < num_stages && layers_per_stage > 0, "build_tp_pp_schedule: bad shape");
  Schedule s;
  s.mode = parse_overlap(spec.overlap);
  MOE_REQUIRE(s.mode == OverlapMode::none || s.mode == OverlapMode::pipelined,
              std::string("overlap '") + overlap_name(s.mode) + "' applies to ep strategies");
  s.posted_transfers = s.mode == OverlapMode::pipelined;
  const int M = spec.microbatches;
  s.parts.assign(M, PartRows{});
  Builder b(s);
  const bool first = stage == 0, last = stage == num_stages - 1;
  std::vector<int> recv(M, -1);
  auto post_recv = [&](int m) {
    if (!first) recv[m] = b.add(StageKind::pp_recv, -1, m, Stream::recv, {});
  };
  if (s.posted_transfers) post_recv(0);
  for (int m = 0; m < M; ++m) {
    if (s.posted_transfers) {
      if (m + 1 < M) post_recv(m + 1);
    } else {
      post_recv(m);
    }
    std::vector<int> dep;
    if (recv[m] >= 0) dep.push_back(recv[m]);
    for (int i = 0; i < layers_per_stage; ++i) {
      if (attention) {
        dep = {b.add(StageKind::attention, i, m, Stream::compute, dep)};
        dep = {b.add(StageKind::tp_allreduce, i, m, Stream::compute, dep)};
      }
      dep = {b.add(StageKind::moe_local, i, m, Stream::compute, dep)};
      dep = {b.add(StageKind::tp_allreduce, i, m, Stream::compute, dep)};
    }
    if (!last) b.add(StageKind::pp_send, -1, m, Stream::send, dep);
  }
  return s;
}

}  // namespace moe
