// Proposed: large expert parallelism. Attention is data parallel (each rank owns a contiguous block
// of sequences and their KV cache, with full attention weights); the MoE is expert parallel: the
// placement maps each expert to rank(s), tokens travel to their experts by an all-to-all (dispatch)
// and back by a second one (combine). Per layer the story is: route -> plan -> dispatch -> experts
// -> combine, part by part (token chunks or micro-batches of sequences). The order of the stages,
// and which of them overlap, is the step's schedule (schedule/schedule.hpp): this file executes it.
// With expert_tp > 1 each expert is split over a group of expert_tp ranks (W1 columns, W2 rows):
// dispatch sends a token to every member of its expert's group, each member computes its partial
// output, and the partials come back to the token's rank, where the combine's weighted sum adds them
// (sum at the source; see shard_routing).
#include <algorithm>

#include "core/error.hpp"
#include "cost/ep_receive.hpp"
#include "placement/strategy_plan.hpp"
#include "routing/dispatch_plan.hpp"
#include "schedule/layout.hpp"
#include "schedule/schedule.hpp"
#include "strategies/blocks.hpp"
#include "strategies/strategy.hpp"

namespace moe {
namespace {

// Each assignment (t, j) to expert e becomes expert_tp assignments (t, j * expert_tp + m) to the
// shards e * expert_tp + m (shard_placement), with the assignment's weight: the weighted combine of the
// returned rows then sums the members' partial outputs. Dropped assignments stay dropped.
Routing shard_routing(const Routing& r, int expert_tp) {
  Routing out;
  out.num_tokens = r.num_tokens;
  out.top_k = r.top_k * expert_tp;
  out.expert.resize(r.expert.size() * expert_tp);
  out.weight.resize(r.weight.size() * expert_tp);
  for (size_t i = 0; i < r.expert.size(); ++i)
    for (int m = 0; m < expert_tp; ++m) {
      out.expert[i * expert_tp + m] = r.expert[i] < 0 ? -1 : r.expert[i] * expert_tp + m;
      out.weight[i * expert_tp + m] = r.weight[i];
    }
  return out;
}

struct EpLayer {
  std::unique_ptr<AttentionBlock> attention;
  std::unique_ptr<Gate> gate;
  std::unique_ptr<ExpertBank> experts;   // this rank's slots: whole experts, or its shard of each
  std::unique_ptr<LoadBalancer> balancer;
};

// One part (chunk or micro-batch) in flight: its buffers, plans and posted transfers. Every part has
// its own buffers, so that one part's transfer runs while another part computes.
struct Part {
  std::unique_ptr<GrowableMat> send, recv, out, returned;
  DeviceIndex send_idx, combine_slot;
  DeviceWeights combine_w;
  Routing routing;                      // front per part: the part's routing before capacity
  DispatchPlan plan;                    // host vectors stay alive while their uploads are queued
  std::vector<int64_t> recv_rows_slot;  // [ranks * slots] rows from (source, my slot)
  std::vector<int64_t> recv_rows;       // [ranks]
  CommHandle dispatch, combine;
  Event dispatch_posted, combine_posted;
};

class EpStrategy : public Strategy {
 public:
  explicit EpStrategy(const StrategyContext& ctx)
      : ctx_(ctx), m_(ctx.config.model), w_(ctx.config.workload), compute_(ctx.compute), comm_(ctx.world) {
    const StrategyConfig& s = ctx.spec;
    MOE_REQUIRE(int64_t(s.ep) * s.expert_tp == comm_.size(), "ep * expert_tp must equal the world size");
    ranks_ = comm_.size();
    expert_tp_ = s.expert_tp;
    rank_ = comm_.rank();
    local_seqs_ = w_.batch_sequences / ranks_;
    max_len_ = w_.prompt_tokens + w_.decode_steps;
    // A plan file places whole experts on the strategy's units (ranks or expert-TP groups).
    placement_ = ctx.plan ? shard_placement(*ctx.plan, s.expert_tp) : plan_for_strategy(ctx.config, s, ctx.topology);
    check_placement(placement_, ranks_);
    prefill_schedule_ = ep_step_schedule(ctx.config, s, w_.prompt_tokens);
    decode_schedule_ = ep_step_schedule(ctx.config, s, 1);

    const int64_t local_tokens = int64_t(local_seqs_) * w_.prompt_tokens;
    const int64_t d = m_.hidden;
    for (int l = 0; l < m_.layers; ++l) {
      EpLayer el;
      if (m_.attention)
        el.attention = std::make_unique<AttentionBlock>(compute_, m_, l, 0, m_.heads, local_seqs_, max_len_, local_tokens);
      el.gate = std::make_unique<Gate>(compute_, m_, l, local_tokens, ctx.routing);
      // Shard e * expert_tp + m of this rank (member m = rank % expert_tp) holds FFN columns
      // [m, m + 1) * ffn_hidden / expert_tp of expert e.
      std::vector<int> experts;
      for (int shard : placement_.layers[l].slots[rank_]) experts.push_back(shard / expert_tp_);
      const int64_t cols = m_.ffn_hidden / expert_tp_;
      el.experts = std::make_unique<ExpertBank>(compute_, m_, l, experts, int64_t(rank_ % expert_tp_) * cols, cols,
                                                local_tokens * m_.top_k * expert_tp_);
      el.balancer = std::make_unique<LoadBalancer>(s.load_balancing, m_.experts);
      layers_.push_back(std::move(el));
    }
    const size_t num_parts = std::max(prefill_schedule_.parts.size(), decode_schedule_.parts.size());
    const int64_t assignments = max_part_rows(prefill_schedule_) * m_.top_k * expert_tp_;
    parts_.resize(num_parts);
    // Rows received depend on routing: allocated for the bound the memory estimate counts, grown
    // on demand past it.
    const int64_t received = ep_receive_rows(ctx.config, s);
    for (Part& p : parts_) {
      p.send = std::make_unique<GrowableMat>(compute_, assignments, d);
      p.recv = std::make_unique<GrowableMat>(compute_, received, d);
      p.out = std::make_unique<GrowableMat>(compute_, received, d);
      p.returned = std::make_unique<GrowableMat>(compute_, assignments, d);
      p.send_idx = compute_.alloc_index(assignments);
      p.combine_slot = compute_.alloc_index(assignments);
      p.combine_w = compute_.alloc_weights(assignments);
    }
    x_ = compute_.alloc_mat(local_tokens, d);
    z_ = compute_.alloc_mat(local_tokens, d);
    partial_ = compute_.alloc_mat(local_tokens, d);
    last_idx_ = compute_.alloc_index(local_seqs_);
    next_input_ = compute_.alloc_mat(local_seqs_, d);
    prompt_ = compute_.alloc_mat(local_tokens, d);
    const auto host = generate_prompt_rows(m_, w_.batch_sequences, w_.prompt_tokens, int64_t(rank_) * local_tokens, local_tokens);
    compute_.upload(host.data(), prompt_.view, Stream::compute);
    compute_.synchronize(Stream::compute);
    step_load_.chosen.assign(m_.layers, std::vector<int64_t>(m_.experts, 0));
    step_load_.dropped = step_load_.chosen;
    step_load_.chosen_here = step_load_.chosen;
    step_load_.dropped_here = step_load_.chosen;
    step_load_.processed.assign(m_.layers, 0);
  }

  std::string kind() const override { return strategy_kind_name(StrategyKind::ep); }
  // Whole experts per rank; expert shards (expert_tp > 1) have no whole-expert placement to report.
  const Placement* placement() const override { return expert_tp_ == 1 ? &placement_ : nullptr; }
  const Placement* rank_placement() const override { return &placement_; }
  nlohmann::ordered_json layout() const override { return strategy_layout(ctx_.config, ctx_.spec, &placement_); }

  void reset() override {
    past_len_ = 0;
    for (auto& l : layers_) l.balancer->reset();
  }

  void prefill(PhaseTimer& timer) override { run_step(timer, prefill_schedule_, w_.prompt_tokens); }
  void decode_step(PhaseTimer& timer) override {
    MOE_REQUIRE(past_len_ + 1 <= max_len_, "more decode steps than workload.decode_steps");
    run_step(timer, decode_schedule_, 1);
  }

  std::vector<float> gather_output() override {
    const Mat out = x_.slice_rows(0, last_rows_);
    std::vector<float> mine(static_cast<size_t>(out.elements()));
    compute_.download(out, mine.data(), Stream::compute);
    compute_.synchronize(Stream::compute);
    return comm_.gather_host(mine, 0);  // rank blocks are contiguous in global token order
  }

 private:
  // The step in the schedule's order: x holds the rank's rows and is updated in place, part by part.
  void run_step(PhaseTimer& timer, const Schedule& schedule, int new_len) {
    step_ = Step{&schedule, new_len, int64_t(local_seqs_) * new_len, int64_t(w_.batch_sequences) * new_len};
    compute_.copy(new_len == 1 ? next_input_.view : prompt_.view, x_.slice_rows(0, step_.rows));
    begin_step_choices(m_.layers, step_.global_tokens, m_.top_k);
    std::fill(step_load_.processed.begin(), step_load_.processed.end(), 0);
    for (const Stage& stage : schedule.stages) {
      ActivityScope layer_activity(ActivityField::layer, stage.layer);
      ActivityScope part_activity(ActivityField::chunk, stage.part);
      switch (stage.kind) {
        case StageKind::attention: attention(timer, stage); break;
        case StageKind::gate: route(timer, stage); break;
        case StageKind::counts: plan_and_count(timer, stage.layer); break;
        case StageKind::pack: pack(timer, stage); break;
        case StageKind::dispatch: dispatch(stage); break;
        case StageKind::experts: experts(timer, stage); break;
        case StageKind::combine: combine(stage); break;
        case StageKind::unpack: unpack(timer, stage); break;
        default: MOE_REQUIRE(false, std::string("ep: unexpected stage ") + stage_name(stage.kind));
      }
    }
    for (auto& L : layers_) L.balancer->end_step();  // step boundary
    last_rows_ = step_.rows;
    past_len_ += new_len;
    // Next decode input: rms of each local sequence's last output row (no communication).
    std::vector<int32_t> last(local_seqs_);
    for (int s = 0; s < local_seqs_; ++s) last[s] = s * new_len + new_len - 1;
    compute_.upload_index(last.data(), last_idx_.view, Stream::compute);
    compute_.gather_rows(x_.slice_rows(0, step_.rows), last_idx_.view, next_input_.view);
    compute_.rms_norm(next_input_.view, next_input_.view);
  }

  // Rows of a stage's part (part -1: every row of the rank).
  PartRows rows_of(int part) const {
    if (part >= 0) return step_.schedule->parts.at(part);
    return PartRows{0, step_.rows, 0, local_seqs_};
  }
  SpanTag tag(const Stage& s, int64_t bytes = 0) const { return SpanTag{stage_name(s.kind), s.layer, s.part, bytes}; }

  // h = x + Attn(rms(x)) over the part's sequences.
  void attention(PhaseTimer& timer, const Stage& s) {
    const PartRows pr = rows_of(s.part);
    if (pr.rows == 0) return;
    ScopedPhase p(timer, Phase::attention, tag(s));
    const Mat x = x_.slice_rows(pr.row0, pr.rows), z = z_.slice_rows(pr.row0, pr.rows);
    const Mat attn = partial_.slice_rows(pr.row0, pr.rows);
    compute_.rms_norm(x, z);
    layers_[s.layer].attention->forward(z, pr.seq0, pr.seqs, past_len_, step_.new_len, attn);
    compute_.add(x, attn);
  }

  // Gate and top-k of the part's tokens (before capacity, which needs the whole layer-step).
  void route(PhaseTimer& timer, const Stage& s) {
    const PartRows pr = rows_of(s.part);
    EpLayer& L = layers_[s.layer];
    Routing r = empty_routing(m_.experts, m_.top_k);
    if (pr.rows > 0) {
      ScopedPhase p(timer, Phase::gate, tag(s));
      const Mat x = x_.slice_rows(pr.row0, pr.rows), z = z_.slice_rows(pr.row0, pr.rows);
      compute_.rms_norm(x, z);
      const int seq0 = rank_ * local_seqs_ + pr.seq0;
      r = L.gate->route(z, TokenBlock{s.layer, seq0, pr.seqs, past_len_, step_.new_len}, L.balancer->multipliers(), timer);
      ScopedHostWork host(timer, Phase::gate);
      record_choices(s.layer, int64_t(seq0) * step_.new_len, r);
    }
    if (s.part >= 0) parts_[s.part].routing = std::move(r);
    else layer_routing_ = std::move(r);
  }

  // The layer's routing (its parts' in order), capacity in global token order (earlier ranks'
  // tokens first), every part's dispatch plan, and the layer's one count exchange: every part's
  // rows per (destination, slot) and this rank's chosen and dropped counts per expert. With a
  // capacity limit the chosen counts go first in a round of their own (a rank's drops depend on the
  // earlier ranks' choices). All of it is host work of the dispatch phase: the planning and
  // bookkeeping in "plan" spans, the exchanges in communication spans nothing overlaps.
  void plan_and_count(PhaseTimer& timer, int l) {
    const Schedule& sched = *step_.schedule;
    const int P = static_cast<int>(sched.parts.size()), E = m_.experts;
    const LayerPlacement& lp = placement_.layers[l];
    const int S = std::max(1, lp.max_slots());
    const SpanTag plan_tag{"plan", l, -1, 0}, counts_tag{stage_name(StageKind::counts), l, -1, 0};
    // Host planning or bookkeeping: a dispatch span that is all host work.
    auto host_step = [&](auto&& work) {
      ScopedPhase p(timer, Phase::dispatch, plan_tag);
      ScopedHostWork host(timer, Phase::dispatch);
      work();
    };
    // A blocking host exchange: a communication span nothing can overlap.
    auto exchange = [&](const std::vector<int64_t>& send, int per_peer) {
      ScopedCommunication c(timer, compute_, Phase::dispatch, counts_tag);
      ScopedHostWork host(timer, Phase::dispatch);
      return comm_.all_to_all_counts(send, per_peer);
    };
    Routing& r = layer_routing_;   // expert indices (capacity and counts are per expert)
    const double factor = ctx_.spec.load_balancing.capacity_factor;
    std::vector<int64_t> mine;
    host_step([&] {
      if (sched.front_per_part) {
        r = empty_routing(E, m_.top_k);
        for (int q = 0; q < P; ++q) append_routing(r, parts_[q].routing);
      }
      if (factor > 0)
        for (int q = 0; q < ranks_; ++q) mine.insert(mine.end(), r.chosen_per_expert.begin(), r.chosen_per_expert.end());
    });
    if (factor > 0) {
      const std::vector<int64_t> all = exchange(mine, E);
      host_step([&] {
        std::vector<int64_t> earlier(E, 0);
        for (int q = 0; q < rank_; ++q)
          for (int e = 0; e < E; ++e) earlier[e] += all[int64_t(q) * E + e];
        apply_capacity(r, E, expert_capacity(factor, step_.global_tokens, m_.top_k, E), earlier);
      });
    }
    // Dispatch plans route shards (expert_tp > 1) or experts over the ranks.
    const int64_t per_peer = int64_t(P) * S + 2 * E;
    std::vector<int64_t> out(per_peer * ranks_, 0);
    host_step([&] {
      if (expert_tp_ > 1) shard_routing_ = shard_routing(r, expert_tp_);
      const Routing& dispatched = expert_tp_ > 1 ? shard_routing_ : r;
      for (int q = 0; q < P; ++q) {
        const PartRows pr = sched.parts[q];
        parts_[q].plan = make_dispatch_plan(dispatched, static_cast<int>(pr.row0), static_cast<int>(pr.rows), lp, rank_, ctx_.topology);
        for (int dst = 0; dst < ranks_; ++dst)
          for (int sl = 0; sl < S; ++sl)
            out[dst * per_peer + int64_t(q) * S + sl] = parts_[q].plan.send_rows_slot[int64_t(dst) * S + sl];
      }
      for (int dst = 0; dst < ranks_; ++dst) {
        std::copy(r.chosen_per_expert.begin(), r.chosen_per_expert.end(), out.begin() + dst * per_peer + int64_t(P) * S);
        std::copy(r.dropped_per_expert.begin(), r.dropped_per_expert.end(), out.begin() + dst * per_peer + int64_t(P) * S + E);
      }
    });
    const std::vector<int64_t> in = exchange(out, static_cast<int>(per_peer));
    host_step([&] {
      std::vector<int64_t> chosen(E, 0), dropped(E, 0);
      for (int q = 0; q < P; ++q) {
        Part& part = parts_[q];
        part.recv_rows_slot.assign(int64_t(ranks_) * S, 0);
        part.recv_rows.assign(ranks_, 0);
        for (int src = 0; src < ranks_; ++src)
          for (int sl = 0; sl < S; ++sl) {
            const int64_t n = in[src * per_peer + int64_t(q) * S + sl];
            part.recv_rows_slot[int64_t(src) * S + sl] = n;
            part.recv_rows[src] += n;
          }
      }
      for (int src = 0; src < ranks_; ++src)
        for (int e = 0; e < E; ++e) {
          chosen[e] += in[src * per_peer + int64_t(P) * S + e];
          dropped[e] += in[src * per_peer + int64_t(P) * S + E + e];
        }
      layers_[l].balancer->observe(step_.global_tokens, chosen);
      step_load_.chosen_here[l] = r.chosen_per_expert;
      step_load_.dropped_here[l] = r.dropped_per_expert;
      if (rank_ == 0) {
        step_load_.chosen[l] = chosen;
        step_load_.dropped[l] = dropped;
      }
    });
  }

  // Gather the part's rows to send, in (destination, slot, token) order.
  void pack(PhaseTimer& timer, const Stage& s) {
    Part& part = parts_[s.part];
    const PartRows pr = rows_of(s.part);
    const int64_t sent = static_cast<int64_t>(part.plan.send_token.size());
    ScopedPhase p(timer, Phase::dispatch, tag(s));
    const IndexVec idx{part.send_idx.view.data, sent};
    compute_.upload_index(part.plan.send_token.data(), idx, Stream::compute);
    compute_.gather_rows(z_.slice_rows(pr.row0, pr.rows), idx, part.send->rows(sent));
  }

  int64_t total(const std::vector<int64_t>& v) const {
    int64_t t = 0;
    for (int64_t n : v) t += n;
    return t;
  }
  int64_t bytes_to_others(const std::vector<int64_t>& rows) const {
    return (total(rows) - rows[rank_]) * m_.hidden * dtype_bytes(compute_.dtype());
  }

  void dispatch(const Stage& s) {
    Part& part = parts_[s.part];
    const Mat send = part.send->rows(total(part.plan.send_rows));
    const Mat recv = part.recv->rows(total(part.recv_rows));
    part.dispatch_posted = compute_.record(Stream::compute);
    part.dispatch = comm_.post_all_to_all_v(send, part.plan.send_rows, recv, part.recv_rows, Stream::compute);
  }

  // The rank's experts on the rows of each source (rows from one source are grouped by slot), writing
  // outputs in the received order, ready for the return trip. Overlapped modes start on each
  // source's rows as they arrive; overlap none waits for the whole exchange first.
  void experts(PhaseTimer& timer, const Stage& s) {
    Part& part = parts_[s.part];
    ExpertBank& bank = *layers_[s.layer].experts;
    const int S = static_cast<int>(part.recv_rows_slot.size() / ranks_);
    const int64_t received = total(part.recv_rows);
    const Mat recv = part.recv->rows(received), out = part.out->rows(received);
    std::vector<int64_t> offset(ranks_ + 1, 0);
    for (int q = 0; q < ranks_; ++q) offset[q + 1] = offset[q] + part.recv_rows[q];
    Event arrived;
    std::vector<int> sources;
    if (step_.schedule->mode == OverlapMode::none)
      for (int src; (src = comm_.wait_next_source(part.dispatch, Stream::compute, &arrived)) >= 0;) sources.push_back(src);
    for (size_t i = 0;; ++i) {
      const int src = step_.schedule->mode == OverlapMode::none
                          ? (i < sources.size() ? sources[i] : -1)
                          : comm_.wait_next_source(part.dispatch, Stream::compute, &arrived);
      if (src < 0) break;
      if (part.recv_rows[src] == 0) continue;
      ScopedPhase p(timer, Phase::expert, SpanTag{stage_name(s.kind), s.layer, s.part, part.recv_rows[src]});
      std::vector<int64_t> rows_per_slot(bank.experts().size(), 0);
      for (size_t sl = 0; sl < rows_per_slot.size(); ++sl) rows_per_slot[sl] = part.recv_rows_slot[int64_t(src) * S + sl];
      bank.run(recv.slice_rows(offset[src], part.recv_rows[src]), rows_per_slot, out.slice_rows(offset[src], part.recv_rows[src]));
    }
    timer.communication(Phase::dispatch, Stream::send, part.dispatch_posted, arrived,
                        SpanTag{stage_name(StageKind::dispatch), s.layer, s.part, bytes_to_others(part.plan.send_rows)});
    step_load_.processed[s.layer] += received;
  }

  void combine(const Stage& s) {
    Part& part = parts_[s.part];
    const Mat back = part.out->rows(total(part.recv_rows));
    const Mat returned = part.returned->rows(total(part.plan.send_rows));
    part.combine_posted = compute_.record(Stream::compute);
    part.combine = comm_.post_all_to_all_v(back, part.recv_rows, returned, part.plan.send_rows, Stream::compute);
  }

  // y = h + sum_j w_j * expert_j(rms(h)) for the part's tokens.
  void unpack(PhaseTimer& timer, const Stage& s) {
    Part& part = parts_[s.part];
    const PartRows pr = rows_of(s.part);
    const Event back = comm_.wait(part.combine, Stream::compute);
    timer.communication(Phase::combine, Stream::send, part.combine_posted, back,
                        SpanTag{stage_name(StageKind::combine), s.layer, s.part, bytes_to_others(part.recv_rows)});
    if (pr.rows == 0) return;
    ScopedPhase p(timer, Phase::combine, tag(s));
    const int kt = m_.top_k * expert_tp_;   // returned rows per token: one per assignment and shard
    const int64_t kn = pr.rows * kt;
    const IndexVec slot{part.combine_slot.view.data, kn};
    const WeightVec weight{part.combine_w.view.data, kn};
    compute_.upload_index(part.plan.combine_slot.data(), slot, Stream::compute);
    compute_.upload_weights(part.plan.combine_weight.data(), weight, Stream::compute);
    const Mat moe = partial_.slice_rows(pr.row0, pr.rows);
    compute_.weighted_combine(part.returned->rows(total(part.plan.send_rows)), slot, weight, kt, moe, false);
    compute_.add(x_.slice_rows(pr.row0, pr.rows), moe);
  }

  struct Step {
    const Schedule* schedule = nullptr;
    int new_len = 0;
    int64_t rows = 0;            // this rank's token rows
    int64_t global_tokens = 0;   // every rank's
  };

  StrategyContext ctx_;
  const ModelConfig& m_;
  const WorkloadConfig& w_;
  ComputeBackend& compute_;
  Comm& comm_;
  int ranks_ = 1, expert_tp_ = 1, rank_ = 0, local_seqs_ = 0, max_len_ = 0, past_len_ = 0;
  int64_t last_rows_ = 0;
  Placement placement_;
  Schedule prefill_schedule_, decode_schedule_;
  Step step_;
  std::vector<EpLayer> layers_;
  std::vector<Part> parts_;
  Routing layer_routing_;
  Routing shard_routing_;   // expert_tp > 1: layer_routing_ over the shards
  // x: the rank's rows (updated in place); z: rms-normed rows; partial_: attention and MoE outputs.
  DeviceMat x_, z_, partial_, prompt_, next_input_;
  DeviceIndex last_idx_;
};

}  // namespace

std::unique_ptr<Strategy> make_ep_strategy(const StrategyContext& ctx) { return std::make_unique<EpStrategy>(ctx); }

}  // namespace moe
