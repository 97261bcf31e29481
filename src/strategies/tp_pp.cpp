// Baseline: tensor parallel (tp) inside pipeline stages (pp). Stage s owns layers
// [s*L/pp, (s+1)*L/pp); inside a stage, attention heads and every expert's FFN columns are split over
// the tp ranks and partial outputs are all-reduced. Micro-batches of sequences flow stage to stage
// (GPipe-style forward); the last stage feeds rms(y_last) back to stage 0 for the next decode step.
#include <algorithm>

#include "core/error.hpp"
#include "routing/dispatch_plan.hpp"
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
    x_ = compute_.alloc_mat(mb_tokens, d);
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
    if (stage_ == pp_ - 1) output_ = compute_.alloc_mat(int64_t(w_.batch_sequences) * w_.prompt_tokens, d);
    step_load_.chosen.assign(m_.layers, std::vector<int64_t>(m_.experts, 0));
    step_load_.dropped = step_load_.chosen;
  }

  std::string kind() const override { return "tp_pp"; }
  nlohmann::ordered_json layout() const override {
    return {{"tp", tp_}, {"pp", pp_}, {"microbatches", microbatches_}, {"layers_per_stage", layers_per_stage_},
            {"heads_per_rank", m_.attention ? m_.heads / tp_ : 0}, {"experts_per_rank", m_.experts},
            {"expert_shard_ffn_columns", m_.ffn_hidden / tp_}};
  }

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
      const Mat out = output_.slice_rows(0, last_rows_);
      mine.resize(static_cast<size_t>(out.elements()));
      compute_.download(out, mine.data(), Stream::compute);
      compute_.synchronize(Stream::compute);
    }
    return ctx_.world.gather_host(mine, 0);
  }

 private:
  // One step (prefill with new_len = prompt tokens, or decode with new_len = 1) through the pipeline.
  void run_step(PhaseTimer& timer, int new_len) {
    const int64_t step_tokens = int64_t(w_.batch_sequences) * new_len;
    const int64_t mb_rows = int64_t(mb_seqs_) * new_len;
    const int64_t capacity = expert_capacity(ctx_.spec.load_balancing.capacity_factor, step_tokens, m_.top_k, m_.experts);
    for (auto& c : step_load_.chosen) std::fill(c.begin(), c.end(), 0);
    for (auto& c : step_load_.dropped) std::fill(c.begin(), c.end(), 0);
    begin_step_choices(m_.layers, step_tokens, m_.top_k);
    std::vector<std::vector<int64_t>> chosen(layers_per_stage_, std::vector<int64_t>(m_.experts, 0));
    std::vector<std::vector<int64_t>> dropped = chosen;
    const Mat x = x_.slice_rows(0, mb_rows);

    for (int mb = 0; mb < microbatches_; ++mb) {
      const int seq0 = mb * mb_seqs_;
      ActivityScope chunk_activity(ActivityField::chunk, mb);  // the micro-batch
      if (stage_ == 0) {
        const Mat src = new_len == 1 ? next_input_.slice_rows(seq0, mb_seqs_) : prompt_.slice_rows(seq0 * int64_t(new_len), mb_rows);
        compute_.copy(src, x);
      } else {
        ScopedPhase p(timer, Phase::pp_transfer);
        pp_comm_->recv(x, stage_ - 1, Stream::compute);
      }
      for (int i = 0; i < layers_per_stage_; ++i)
        layer_forward(timer, i, x, seq0, new_len, capacity, chosen[i], dropped[i]);
      if (stage_ < pp_ - 1) {
        ScopedPhase p(timer, Phase::pp_transfer);
        pp_comm_->send(x, stage_ + 1, Stream::compute);
      } else {
        compute_.copy(x, output_.slice_rows(seq0 * int64_t(new_len), mb_rows));
      }
    }
    // Step boundary: global counts of this stage's layers feed the balancers.
    for (int i = 0; i < layers_per_stage_; ++i) {
      layers_[i].balancer->observe(step_tokens, chosen[i]);
      layers_[i].balancer->end_step();
      if (tp_rank_ == 0) {
        step_load_.chosen[first_layer_ + i] = chosen[i];
        step_load_.dropped[first_layer_ + i] = dropped[i];
      }
    }
    last_rows_ = step_tokens;
    past_len_ += new_len;
    feed_back(timer, new_len);
  }

  void layer_forward(PhaseTimer& timer, int i, const Mat& x, int seq0, int new_len, int64_t capacity,
                     std::vector<int64_t>& chosen, std::vector<int64_t>& dropped) {
    ActivityScope layer_activity(ActivityField::layer, first_layer_ + i);
    StageLayer& L = layers_[i];
    const Mat z = z_.slice_rows(0, x.rows), partial = partial_.slice_rows(0, x.rows);
    if (L.attention) {
      {
        ScopedPhase p(timer, Phase::attention);
        compute_.rms_norm(x, z);
        L.attention->forward(z, seq0, mb_seqs_, past_len_, new_len, partial);
      }
      all_reduce(timer, partial);
      compute_.add(x, partial);  // h = x + Attn(rms(x))
    }
    LocalExpertPlan plan;
    {
      ScopedPhase p(timer, Phase::gate);
      compute_.rms_norm(x, z);
      Routing r = L.gate->route(z, TokenBlock{first_layer_ + i, seq0, mb_seqs_, past_len_, new_len}, L.balancer->multipliers());
      if (tp_rank_ == 0) record_choices(first_layer_ + i, int64_t(seq0) * new_len, r);
      apply_capacity(r, m_.experts, capacity, chosen);  // earlier micro-batches come first in token order
      for (int e = 0; e < m_.experts; ++e) {
        chosen[e] += r.chosen_per_expert[e];
        dropped[e] += r.dropped_per_expert[e];
      }
      plan = make_local_plan(r, m_.experts);
      compute_.upload_index(plan.gather_token.data(), IndexVec{gather_idx_.view.data, int64_t(plan.gather_token.size())}, Stream::compute);
      compute_.upload_index(plan.combine_slot.data(), IndexVec{combine_slot_.view.data, int64_t(plan.combine_slot.size())}, Stream::compute);
      compute_.upload_weights(plan.combine_weight.data(), WeightVec{combine_w_.view.data, int64_t(plan.combine_weight.size())}, Stream::compute);
    }
    {
      ScopedPhase p(timer, Phase::expert);
      const int64_t rows = static_cast<int64_t>(plan.gather_token.size());
      const Mat in = perm_in_.slice_rows(0, rows), out = perm_out_.slice_rows(0, rows);
      compute_.gather_rows(z, gather_idx_.view, in);
      L.experts->run(in, plan.rows_per_expert, out);
      compute_.weighted_combine(out, combine_slot_.view, combine_w_.view, m_.top_k, partial, false);
    }
    all_reduce(timer, partial);
    compute_.add(x, partial);  // y = h + MoE(rms(h))
  }

  void all_reduce(PhaseTimer& timer, const Mat& partial) {
    if (tp_ == 1) return;
    ScopedPhase p(timer, Phase::tp_allreduce);
    tp_comm_->all_reduce_sum(partial, Stream::compute);
  }

  // Next decode input rms(y_last) of every sequence, moved from the last stage to stage 0.
  void feed_back(PhaseTimer& timer, int new_len) {
    const Mat next = next_input_.view;
    if (stage_ == pp_ - 1) {
      std::vector<int32_t> last(w_.batch_sequences);
      for (int s = 0; s < w_.batch_sequences; ++s) last[s] = s * new_len + new_len - 1;
      compute_.upload_index(last.data(), last_idx_.view, Stream::compute);
      compute_.gather_rows(output_.view, last_idx_.view, next);
      compute_.rms_norm(next, next);
      compute_.synchronize(Stream::compute);
    }
    if (pp_ == 1) return;
    ScopedPhase p(timer, Phase::pp_transfer);
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
  DeviceMat x_, z_, partial_, perm_in_, perm_out_, next_input_, prompt_, output_;
  DeviceIndex gather_idx_, combine_slot_, last_idx_;
  DeviceWeights combine_w_;
};

}  // namespace

std::unique_ptr<Strategy> make_tp_pp_strategy(const StrategyContext& ctx) { return std::make_unique<TpPpStrategy>(ctx); }

}  // namespace moe
