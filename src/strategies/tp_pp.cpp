// Baseline: tensor parallel (tp) inside pipeline stages (pp). Stage s owns layers
// [s*L/pp, (s+1)*L/pp); inside a stage, attention heads and every expert's FFN columns are split over
// the tp ranks and partial outputs are all-reduced. Micro-batches of sequences flow stage to stage
// (GPipe-style forward); the last stage feeds rms(y_last) back to stage 0 for the next decode step.
#include <algorithm>

#include "core/error.hpp"
#include "routing/dispatch_plan.hpp"
#include "schedule/layout.hpp"
#include "schedule/schedule.hpp"
#include "strategies/blocks.hpp"
#include "strategies/strategy.hpp"

namespace moe {
namespace {

struct StageLayer {
  std::unique_ptr<AttentionBlock> attention;
  std::unique_ptr<Gate> gate;
  std::unique_ptr<ExpertBank> experts;   // all E experts, ffn columns [tp_rank*f/tp, +f/tp)
  std::unique_ptr<LoadBalancer> balancer;
};

class TpPpStrategy : public Strategy {
 public:
  explicit TpPpStrategy(const StrategyContext& ctx)
      : ctx_(ctx), m_(ctx.config.model), w_(ctx.config.workload), compute_(ctx.compute) {
    const StrategyConfig& s = ctx.spec;
    tp_ = s.tp;
    pp_ = s.pp;
    MOE_REQUIRE(tp_ * pp_ == ctx.world.size(), "tp * pp must equal the world size");
    stage_ = ctx.world.rank() / tp_;
    tp_rank_ = ctx.world.rank() % tp_;
    tp_comm_ = ctx.world.split(stage_, tp_rank_);
    pp_comm_ = ctx.world.split(tp_rank_, stage_);
    layers_per_stage_ = m_.layers / pp_;
    first_layer_ = stage_ * layers_per_stage_;
    microbatches_ = s.microbatches;
    schedule_ = tp_pp_stage_schedule(ctx.config, s, stage_);
    mb_seqs_ = w_.batch_sequences / microbatches_;
    max_len_ = w_.prompt_tokens + w_.decode_steps;
    const int64_t mb_tokens = int64_t(mb_seqs_) * w_.prompt_tokens;
    const int heads = m_.attention ? m_.heads / tp_ : 0;
    const int64_t ffn_cols = m_.ffn_hidden / tp_;
    std::vector<int> all_experts(m_.experts);
    for (int e = 0; e < m_.experts; ++e) all_experts[e] = e;
    for (int i = 0; i < layers_per_stage_; ++i) {
      const int l = first_layer_ + i;
      StageLayer sl;
      if (m_.attention)
        sl.attention = std::make_unique<AttentionBlock>(compute_, m_, l, tp_rank_ * heads, heads, w_.batch_sequences,
                                                        max_len_, mb_tokens);
      sl.gate = std::make_unique<Gate>(compute_, m_, l, mb_tokens, ctx.routing);
      sl.experts = std::make_unique<ExpertBank>(compute_, m_, l, all_experts, int64_t(tp_rank_) * ffn_cols, ffn_cols, mb_tokens);
      sl.balancer = std::make_unique<LoadBalancer>(s.load_balancing, m_.experts);
      layers_.push_back(std::move(sl));
    }
    const int64_t d = m_.hidden;
    x_ = compute_.alloc_mat(int64_t(w_.batch_sequences) * w_.prompt_tokens, d);   // every micro-batch
    z_ = compute_.alloc_mat(mb_tokens, d);
    partial_ = compute_.alloc_mat(mb_tokens, d);
    perm_in_ = compute_.alloc_mat(mb_tokens * m_.top_k, d);
    perm_out_ = compute_.alloc_mat(mb_tokens * m_.top_k, d);
    gather_idx_ = compute_.alloc_index(mb_tokens * m_.top_k);
    combine_slot_ = compute_.alloc_index(mb_tokens * m_.top_k);
    combine_w_ = compute_.alloc_weights(mb_tokens * m_.top_k);
    next_input_ = compute_.alloc_mat(w_.batch_sequences, d);
    last_idx_ = compute_.alloc_index(w_.batch_sequences);
    if (stage_ == 0) {
      prompt_ = compute_.alloc_mat(int64_t(w_.batch_sequences) * w_.prompt_tokens, d);
      const auto host = generate_prompt_rows(m_, w_.batch_sequences, w_.prompt_tokens, 0, prompt_.view.rows);
      compute_.upload(host.data(), prompt_.view, Stream::compute);
      compute_.synchronize(Stream::compute);
    }
    step_load_.chosen.assign(m_.layers, std::vector<int64_t>(m_.experts, 0));
    step_load_.dropped = step_load_.chosen;
  }

  std::string kind() const override { return strategy_kind_name(StrategyKind::tp_pp); }
  // As rank 0 (pipeline stage 0) runs it: the layout results report.
  nlohmann::ordered_json layout() const override { return strategy_layout(ctx_.config, ctx_.spec, nullptr); }

  void reset() override {
    past_len_ = 0;
    for (auto& l : layers_) l.balancer->reset();
  }

  void prefill(PhaseTimer& timer) override { run_step(timer, w_.prompt_tokens); }
  void decode_step(PhaseTimer& timer) override {
    MOE_REQUIRE(past_len_ + 1 <= max_len_, "more decode steps than workload.decode_steps");
    run_step(timer, 1);
  }

  std::vector<float> gather_output() override {
    std::vector<float> mine;
    if (stage_ == pp_ - 1 && tp_rank_ == 0) {
      const Mat out = x_.slice_rows(0, last_rows_);
      mine.resize(static_cast<size_t>(out.elements()));
      compute_.download(out, mine.data(), Stream::compute);
      compute_.synchronize(Stream::compute);
    }
    return ctx_.world.gather_host(mine, 0);
  }

 private:
  // One step (prefill with new_len = prompt tokens, or decode with new_len = 1) through the
  // pipeline, in the order of the stage's schedule. Micro-batch m lives in rows
  // [m*mb_rows, +mb_rows) of x_ from its arrival to its departure (on the last stage: to the end).
  void run_step(PhaseTimer& timer, int new_len) {
    const int64_t step_tokens = int64_t(w_.batch_sequences) * new_len;
    step_ = Step{new_len, int64_t(mb_seqs_) * new_len,
                 expert_capacity(ctx_.spec.load_balancing.capacity_factor, step_tokens, m_.top_k, m_.experts)};
    for (auto& c : step_load_.chosen) std::fill(c.begin(), c.end(), 0);
    for (auto& c : step_load_.dropped) std::fill(c.begin(), c.end(), 0);
    begin_step_choices(m_.layers, step_tokens, m_.top_k);
    chosen_.assign(layers_per_stage_, std::vector<int64_t>(m_.experts, 0));
    dropped_ = chosen_;
    arrived_.assign(microbatches_, false);
    recvs_.assign(microbatches_, Transfer{});
    sends_.assign(microbatches_, Transfer{});
    for (const Stage& st : schedule_.stages) {
      ActivityScope layer_activity(ActivityField::layer, st.layer >= 0 ? first_layer_ + st.layer : -1);
      ActivityScope chunk_activity(ActivityField::chunk, st.part);  // the micro-batch
      switch (st.kind) {
        case StageKind::pp_recv: receive(timer, st.part); break;
        case StageKind::attention: attention(timer, st.layer, st.part); break;
        case StageKind::moe_local: moe_local(timer, st.layer, st.part); break;
        case StageKind::tp_allreduce: all_reduce_add(timer, st.layer, st.part); break;
        case StageKind::pp_send: send(timer, st.part); break;
        default: MOE_REQUIRE(false, std::string("tp_pp: unexpected stage ") + stage_name(st.kind));
      }
    }
    for (int mb = 0; mb < microbatches_; ++mb) complete(timer, sends_[mb], Phase::pp_transfer, "pp_send", mb);
    // Step boundary: global counts of this stage's layers feed the balancers.
    for (int i = 0; i < layers_per_stage_; ++i) {
      layers_[i].balancer->observe(step_tokens, chosen_[i]);
      layers_[i].balancer->end_step();
      if (tp_rank_ == 0) {
        step_load_.chosen[first_layer_ + i] = chosen_[i];
        step_load_.dropped[first_layer_ + i] = dropped_[i];
      }
    }
    last_rows_ = step_tokens;
    past_len_ += new_len;
    feed_back(timer, new_len);
  }

  Mat microbatch(int mb) const { return x_.slice_rows(mb * step_.mb_rows, step_.mb_rows); }

  // A posted stage-to-stage transfer and the event of its posting.
  struct Transfer {
    bool posted = false;
    CommHandle handle;
    Event start;
  };

  void receive(PhaseTimer& timer, int mb) {
    if (!schedule_.posted_transfers) {
      ScopedCommunication c(timer, compute_, Phase::pp_transfer, SpanTag{"pp_recv", -1, mb, microbatch(mb).bytes()});
      pp_comm_->recv(microbatch(mb), stage_ - 1, Stream::compute);
      arrived_[mb] = true;
      return;
    }
    recvs_[mb] = Transfer{true, {}, compute_.record(Stream::compute)};
    recvs_[mb].handle = pp_comm_->post_recv(microbatch(mb), stage_ - 1, Stream::compute);
  }

  void send(PhaseTimer& timer, int mb) {
    if (!schedule_.posted_transfers) {
      ScopedCommunication c(timer, compute_, Phase::pp_transfer, SpanTag{"pp_send", -1, mb, microbatch(mb).bytes()});
      pp_comm_->send(microbatch(mb), stage_ + 1, Stream::compute);
      return;
    }
    sends_[mb] = Transfer{true, {}, compute_.record(Stream::compute)};
    sends_[mb].handle = pp_comm_->post_send(microbatch(mb), stage_ + 1, Stream::compute);
  }

  void complete(PhaseTimer& timer, Transfer& t, Phase phase, const char* stage, int mb) {
    if (!t.posted) return;
    const Event done = pp_comm_->wait(t.handle, Stream::compute);
    timer.communication(phase, Stream::send, t.start, done, SpanTag{stage, -1, mb, microbatch(mb).bytes()});
    t.posted = false;
  }

  // Before a micro-batch's first layer: its rows are the step's input (stage 0) or have arrived.
  void ensure_input(PhaseTimer& timer, int mb) {
    if (arrived_[mb]) return;
    arrived_[mb] = true;
    if (stage_ > 0) return complete(timer, recvs_[mb], Phase::pp_transfer, "pp_recv", mb);
    const int seq0 = mb * mb_seqs_;
    const Mat src = step_.new_len == 1 ? next_input_.slice_rows(seq0, mb_seqs_)
                                       : prompt_.slice_rows(seq0 * int64_t(step_.new_len), step_.mb_rows);
    compute_.copy(src, microbatch(mb));
  }

  void attention(PhaseTimer& timer, int i, int mb) {
    ensure_input(timer, mb);
    const Mat x = microbatch(mb), z = z_.slice_rows(0, x.rows), partial = partial_.slice_rows(0, x.rows);
    ScopedPhase p(timer, Phase::attention, SpanTag{"attention", first_layer_ + i, mb, 0});
    compute_.rms_norm(x, z);
    layers_[i].attention->forward(z, mb * mb_seqs_, mb_seqs_, past_len_, step_.new_len, partial);
  }

  // Gate, routing and this rank's column shards of every expert on the micro-batch: partial MoE output.
  void moe_local(PhaseTimer& timer, int i, int mb) {
    ensure_input(timer, mb);
    StageLayer& L = layers_[i];
    const Mat x = microbatch(mb), z = z_.slice_rows(0, x.rows), partial = partial_.slice_rows(0, x.rows);
    const int seq0 = mb * mb_seqs_;
    LocalExpertPlan& plan = plan_;   // the next gate's download synchronizes before it is replaced
    {
      ScopedPhase p(timer, Phase::gate, SpanTag{"gate", first_layer_ + i, mb, 0});
      compute_.rms_norm(x, z);
      Routing r = L.gate->route(z, TokenBlock{first_layer_ + i, seq0, mb_seqs_, past_len_, step_.new_len},
                                L.balancer->multipliers(), timer);
      {
        ScopedHostWork host(timer, Phase::gate);   // capacity and the local plan: host bookkeeping
        if (tp_rank_ == 0) record_choices(first_layer_ + i, int64_t(seq0) * step_.new_len, r);
        apply_capacity(r, m_.experts, step_.capacity, chosen_[i]);  // earlier micro-batches come first in token order
        for (int e = 0; e < m_.experts; ++e) {
          chosen_[i][e] += r.chosen_per_expert[e];
          dropped_[i][e] += r.dropped_per_expert[e];
        }
        plan = make_local_plan(r, m_.experts);
      }
      compute_.upload_index(plan.gather_token.data(), IndexVec{gather_idx_.view.data, int64_t(plan.gather_token.size())}, Stream::compute);
      compute_.upload_index(plan.combine_slot.data(), IndexVec{combine_slot_.view.data, int64_t(plan.combine_slot.size())}, Stream::compute);
      compute_.upload_weights(plan.combine_weight.data(), WeightVec{combine_w_.view.data, int64_t(plan.combine_weight.size())}, Stream::compute);
    }
    ScopedPhase p(timer, Phase::expert, SpanTag{"moe_local", first_layer_ + i, mb, 0});
    const int64_t rows = static_cast<int64_t>(plan.gather_token.size());
    const Mat in = perm_in_.slice_rows(0, rows), out = perm_out_.slice_rows(0, rows);
    compute_.gather_rows(z, gather_idx_.view, in);
    L.experts->run(in, plan.rows_per_expert, out);
    compute_.weighted_combine(out, combine_slot_.view, combine_w_.view, m_.top_k, partial, false);
  }

  // Sum of the tp ranks' partial outputs, then the residual: x += Attn(..) or x += MoE(..).
  void all_reduce_add(PhaseTimer& timer, int i, int mb) {
    const Mat x = microbatch(mb), partial = partial_.slice_rows(0, x.rows);
    if (tp_ > 1) {
      ScopedCommunication c(timer, compute_, Phase::tp_allreduce, SpanTag{"tp_allreduce", first_layer_ + i, mb, partial.bytes()});
      tp_comm_->all_reduce_sum(partial, Stream::compute);
    }
    compute_.add(x, partial);
  }

  // Next decode input rms(y_last) of every sequence, moved from the last stage to stage 0.
  void feed_back(PhaseTimer& timer, int new_len) {
    const Mat next = next_input_.view;
    if (stage_ == pp_ - 1) {
      std::vector<int32_t> last(w_.batch_sequences);
      for (int s = 0; s < w_.batch_sequences; ++s) last[s] = s * new_len + new_len - 1;
      compute_.upload_index(last.data(), last_idx_.view, Stream::compute);
      compute_.gather_rows(x_.slice_rows(0, int64_t(w_.batch_sequences) * new_len), last_idx_.view, next);
      compute_.rms_norm(next, next);
      compute_.synchronize(Stream::compute);
    }
    if (pp_ == 1) return;
    ScopedCommunication c(timer, compute_, Phase::pp_transfer, SpanTag{"pp_feedback", -1, -1, next.bytes()});
    if (stage_ == pp_ - 1) pp_comm_->send(next, 0, Stream::compute);
    if (stage_ == 0) pp_comm_->recv(next, pp_ - 1, Stream::compute);
  }

  StrategyContext ctx_;
  const ModelConfig& m_;
  const WorkloadConfig& w_;
  ComputeBackend& compute_;
  int tp_ = 1, pp_ = 1, stage_ = 0, tp_rank_ = 0;
  int layers_per_stage_ = 0, first_layer_ = 0, microbatches_ = 1, mb_seqs_ = 0, max_len_ = 0;
  int past_len_ = 0;
  int64_t last_rows_ = 0;
  std::unique_ptr<Comm> tp_comm_, pp_comm_;
  std::vector<StageLayer> layers_;
  struct Step {
    int new_len = 0;
    int64_t mb_rows = 0;
    int64_t capacity = -1;
  };
  Schedule schedule_;
  Step step_;
  std::vector<std::vector<int64_t>> chosen_, dropped_;   // [layers of the stage][E] this step, so far
  std::vector<bool> arrived_;
  LocalExpertPlan plan_;
  std::vector<Transfer> recvs_, sends_;
  DeviceMat x_, z_, partial_, perm_in_, perm_out_, next_input_, prompt_;
  DeviceIndex gather_idx_, combine_slot_, last_idx_;
  DeviceWeights combine_w_;
};

}  // namespace

std::unique_ptr<Strategy> make_tp_pp_strategy(const StrategyContext& ctx) { return std::make_unique<TpPpStrategy>(ctx); }

}  // namespace moe
