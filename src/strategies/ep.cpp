// Proposed: large expert parallelism. Attention is data parallel (each rank owns a contiguous block
// of sequences and their KV cache, with full attention weights); the MoE is expert parallel: the
// placement maps each expert to rank(s), tokens travel to their experts by an all-to-all (dispatch)
// and back by a second one (combine). Per layer the story is: route -> plan -> dispatch -> experts
// -> combine, in `chunks` token chunks.
#include <algorithm>

#include "core/error.hpp"
#include "placement/strategy_plan.hpp"
#include "routing/dispatch_plan.hpp"
#include "strategies/blocks.hpp"
#include "strategies/strategy.hpp"

namespace moe {
namespace {

struct EpLayer {
  std::unique_ptr<AttentionBlock> attention;
  std::unique_ptr<Gate> gate;
  std::unique_ptr<ExpertBank> experts;   // this rank's slots, whole experts
  std::unique_ptr<LoadBalancer> balancer;
};

class EpStrategy : public Strategy {
 public:
  explicit EpStrategy(const StrategyContext& ctx)
      : ctx_(ctx), m_(ctx.config.model), w_(ctx.config.workload), compute_(ctx.compute), comm_(ctx.world) {
    const StrategyConfig& s = ctx.spec;
    MOE_REQUIRE(s.expert_tp == 1, "expert_tp > 1 is not supported");
    MOE_REQUIRE(s.ep == comm_.size(), "ep must equal the world size");
    ep_ = s.ep;
    rank_ = comm_.rank();
    chunks_ = s.chunks;
    local_seqs_ = w_.batch_sequences / ep_;
    max_len_ = w_.prompt_tokens + w_.decode_steps;
    placement_ = ctx.plan ? *ctx.plan : plan_for_strategy(ctx.config, s, ctx.topology);
    check_placement(placement_, ep_);

    const int64_t local_tokens = int64_t(local_seqs_) * w_.prompt_tokens;
    const int64_t d = m_.hidden;
    for (int l = 0; l < m_.layers; ++l) {
      EpLayer el;
      if (m_.attention)
        el.attention = std::make_unique<AttentionBlock>(compute_, m_, l, 0, m_.heads, local_seqs_, max_len_, local_tokens);
      el.gate = std::make_unique<Gate>(compute_, m_, l, local_tokens, ctx.routing);
      el.experts = std::make_unique<ExpertBank>(compute_, m_, l, placement_.layers[l].slots[rank_], 0, m_.ffn_hidden,
                                                local_tokens * m_.top_k);
      el.balancer = std::make_unique<LoadBalancer>(s.load_balancing, m_.experts);
      layers_.push_back(std::move(el));
    }
    x_ = compute_.alloc_mat(local_tokens, d);
    z_ = compute_.alloc_mat(local_tokens, d);
    partial_ = compute_.alloc_mat(local_tokens, d);
    send_ = compute_.alloc_mat(local_tokens * m_.top_k, d);
    returned_ = compute_.alloc_mat(local_tokens * m_.top_k, d);
    // Received rows depend on routing; start at the balanced expectation.
    recv_ = std::make_unique<GrowableMat>(compute_, local_tokens * m_.top_k, d);
    regrouped_ = std::make_unique<GrowableMat>(compute_, local_tokens * m_.top_k, d);
    expert_out_ = std::make_unique<GrowableMat>(compute_, local_tokens * m_.top_k, d);
    send_idx_ = compute_.alloc_index(local_tokens * m_.top_k);
    combine_slot_ = compute_.alloc_index(local_tokens * m_.top_k);
    combine_w_ = compute_.alloc_weights(local_tokens * m_.top_k);
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

  std::string kind() const override { return "ep"; }
  const Placement* placement() const override { return &placement_; }
  nlohmann::ordered_json layout() const override {
    nlohmann::ordered_json experts_of_rank = nlohmann::ordered_json::array();
    for (const auto& lp : placement_.layers) experts_of_rank.push_back(lp.slots);
    return {{"ep", ep_}, {"expert_tp", 1}, {"chunks", chunks_}, {"sequences_per_rank", local_seqs_},
            {"placement", placement_.algorithm}, {"max_experts_per_rank", placement_.layers.at(0).max_slots()},
            {"experts_of_rank", experts_of_rank}};
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
    const Mat out = x_.slice_rows(0, last_rows_);
    std::vector<float> mine(static_cast<size_t>(out.elements()));
    compute_.download(out, mine.data(), Stream::compute);
    compute_.synchronize(Stream::compute);
    return comm_.gather_host(mine, 0);  // rank blocks are contiguous in global token order
  }

 private:
  void run_step(PhaseTimer& timer, int new_len) {
    const int64_t rows = int64_t(local_seqs_) * new_len;
    const int64_t step_tokens = int64_t(w_.batch_sequences) * new_len;
    const Mat x = x_.slice_rows(0, rows);
    compute_.copy(new_len == 1 ? next_input_view() : prompt_.view, x);
    begin_step_choices(m_.layers, step_tokens, m_.top_k);
    std::fill(step_load_.processed.begin(), step_load_.processed.end(), 0);
    for (int l = 0; l < m_.layers; ++l) layer_forward(timer, l, x, new_len, step_tokens);
    for (auto& L : layers_) L.balancer->end_step();  // step boundary
    last_rows_ = rows;
    past_len_ += new_len;
    // Next decode input: rms of each local sequence's last output row (no communication).
    std::vector<int32_t> last(local_seqs_);
    for (int s = 0; s < local_seqs_; ++s) last[s] = s * new_len + new_len - 1;
    compute_.upload_index(last.data(), last_idx_.view, Stream::compute);
    compute_.gather_rows(x, last_idx_.view, next_input_view());
    compute_.rms_norm(next_input_view(), next_input_view());
  }

  // Next decode input of every local sequence: [local_seqs x d].
  Mat next_input_view() const { return next_input_.view; }

  void layer_forward(PhaseTimer& timer, int l, const Mat& x, int new_len, int64_t step_tokens) {
    ActivityScope layer_activity(ActivityField::layer, l);
    EpLayer& L = layers_[l];
    const Mat z = z_.slice_rows(0, x.rows), moe_out = partial_.slice_rows(0, x.rows);
    if (L.attention) {
      ScopedPhase p(timer, Phase::attention);
      compute_.rms_norm(x, z);
      L.attention->forward(z, 0, local_seqs_, past_len_, new_len, moe_out);
      compute_.add(x, moe_out);  // h = x + Attn(rms(x))
    }
    Routing r = route(timer, l, x, z, new_len, step_tokens);
    const int num_chunks = static_cast<int>(std::min<int64_t>(chunks_, std::max<int64_t>(x.rows, 1)));
    for (int c = 0; c < num_chunks; ++c) {
      const int t0 = static_cast<int>(x.rows * c / num_chunks), t1 = static_cast<int>(x.rows * (c + 1) / num_chunks);
      ActivityScope chunk_activity(ActivityField::chunk, c);
      moe_chunk(timer, l, r, z, t0, t1 - t0, moe_out);
    }
    compute_.add(x, moe_out);  // y = h + MoE(rms(h))
  }

  // Gate, top-k, capacity in global token order (earlier ranks' tokens come first) and the global
  // per-expert counts for the balancer and the load report.
  Routing route(PhaseTimer& timer, int l, const Mat& x, const Mat& z, int new_len, int64_t step_tokens) {
    ScopedPhase p(timer, Phase::gate);
    EpLayer& L = layers_[l];
    compute_.rms_norm(x, z);
    const int seq0 = rank_ * local_seqs_;
    Routing r = L.gate->route(z, TokenBlock{l, seq0, local_seqs_, past_len_, new_len}, L.balancer->multipliers());
    record_choices(l, int64_t(seq0) * new_len, r);
    const double factor = ctx_.spec.load_balancing.capacity_factor;
    if (factor > 0) {
      const std::vector<int64_t> earlier = comm_.exclusive_scan_host(r.chosen_per_expert);
      apply_capacity(r, m_.experts, expert_capacity(factor, step_tokens, m_.top_k, m_.experts), earlier);
    }
    std::vector<int64_t> counts(r.chosen_per_expert);
    counts.insert(counts.end(), r.dropped_per_expert.begin(), r.dropped_per_expert.end());
    comm_.all_reduce_sum_host(counts);
    const std::vector<int64_t> chosen(counts.begin(), counts.begin() + m_.experts);
    L.balancer->observe(step_tokens, chosen);
    step_load_.chosen_here[l] = r.chosen_per_expert;
    step_load_.dropped_here[l] = r.dropped_per_expert;
    if (rank_ == 0) {
      step_load_.chosen[l] = chosen;
      step_load_.dropped[l].assign(counts.begin() + m_.experts, counts.end());
    }
    return r;
  }

  void moe_chunk(PhaseTimer& timer, int l, const Routing& r, const Mat& z, int t0, int n, const Mat& moe_out) {
    const LayerPlacement& lp = placement_.layers[l];
    DispatchPlan plan;
    ReceivePlan rplan;
    Mat recv, back;
    {
      ScopedPhase p(timer, Phase::dispatch);
      plan = make_dispatch_plan(r, t0, n, lp, rank_, ctx_.topology);
      std::vector<int64_t> recv_rows_slot(int64_t(ep_) * plan.max_slots, 0);
      for (int sl = 0; sl < plan.max_slots; ++sl) {
        std::vector<int64_t> out(ep_);
        for (int q = 0; q < ep_; ++q) out[q] = plan.send_rows_slot[int64_t(q) * plan.max_slots + sl];
        const std::vector<int64_t> in = comm_.all_to_all_counts(out);
        for (int q = 0; q < ep_; ++q) recv_rows_slot[int64_t(q) * plan.max_slots + sl] = in[q];
      }
      rplan = make_receive_plan(recv_rows_slot, ep_, plan.max_slots);
      const int64_t sent = static_cast<int64_t>(plan.send_token.size());
      const Mat send = send_.slice_rows(0, sent);
      compute_.upload_index(plan.send_token.data(), IndexVec{send_idx_.view.data, sent}, Stream::compute);
      compute_.gather_rows(z.slice_rows(t0, n), IndexVec{send_idx_.view.data, sent}, send);
      recv = recv_->rows(static_cast<int64_t>(rplan.to_slot_major.size()));
      comm_.all_to_all_v(send, plan.send_rows, recv, rplan.recv_rows, Stream::compute);
    }
    {
      ScopedPhase p(timer, Phase::expert);
      const int64_t received = recv.rows;
      step_load_.processed[l] += received;
      const Mat out = expert_out_->rows(received);
      std::vector<int64_t> rows_per_expert(rplan.rows_per_slot.begin(),
                                           rplan.rows_per_slot.begin() + L_experts(l));
      if (rplan.identity) {
        layers_[l].experts->run(recv, rows_per_expert, out);
        back = out;
      } else {
        // Regroup source-major -> slot-major, run, and restore source-major order for the return trip.
        const Mat grouped = regrouped_->rows(received);
        upload_regroup(rplan.to_slot_major);
        compute_.gather_rows(recv, regroup_view(), grouped);
        layers_[l].experts->run(grouped, rows_per_expert, out);
        upload_regroup(rplan.to_source_major);
        compute_.gather_rows(out, regroup_view(), recv);
        back = recv;
      }
    }
    {
      ScopedPhase p(timer, Phase::combine);
      const Mat returned = returned_.slice_rows(0, static_cast<int64_t>(plan.send_token.size()));
      comm_.all_to_all_v(back, rplan.recv_rows, returned, plan.send_rows, Stream::compute);
      const int64_t kn = int64_t(n) * m_.top_k;
      compute_.upload_index(plan.combine_slot.data(), IndexVec{combine_slot_.view.data, kn}, Stream::compute);
      compute_.upload_weights(plan.combine_weight.data(), WeightVec{combine_w_.view.data, kn}, Stream::compute);
      compute_.weighted_combine(returned, IndexVec{combine_slot_.view.data, kn}, WeightVec{combine_w_.view.data, kn},
                                m_.top_k, moe_out.slice_rows(t0, n), false);
    }
  }

  int L_experts(int l) const { return static_cast<int>(placement_.layers[l].slots[rank_].size()); }

  void upload_regroup(const std::vector<int32_t>& idx) {
    if (regroup_dev_.view.size < static_cast<int64_t>(idx.size())) {
      compute_.synchronize_all();
      regroup_dev_ = compute_.alloc_index(std::max<int64_t>(idx.size(), regroup_dev_.view.size * 3 / 2));
    }
    regroup_n_ = static_cast<int64_t>(idx.size());
    compute_.upload_index(idx.data(), IndexVec{regroup_dev_.view.data, regroup_n_}, Stream::compute);
    compute_.synchronize(Stream::compute);  // `idx` is reused by the next upload
  }
  IndexVec regroup_view() const { return IndexVec{regroup_dev_.view.data, regroup_n_}; }

  StrategyContext ctx_;
  const ModelConfig& m_;
  const WorkloadConfig& w_;
  ComputeBackend& compute_;
  Comm& comm_;
  int ep_ = 1, rank_ = 0, chunks_ = 1, local_seqs_ = 0, max_len_ = 0, past_len_ = 0;
  int64_t last_rows_ = 0;
  Placement placement_;
  std::vector<EpLayer> layers_;
  DeviceMat x_, z_, partial_, send_, returned_, prompt_, next_input_;
  std::unique_ptr<GrowableMat> recv_, regrouped_, expert_out_;
  DeviceIndex send_idx_, combine_slot_, last_idx_, regroup_dev_;
  DeviceWeights combine_w_;
  int64_t regroup_n_ = 0;
};

}  // namespace

std::unique_ptr<Strategy> make_ep_strategy(const StrategyContext& ctx) { return std::make_unique<EpStrategy>(ctx); }

}  // namespace moe
