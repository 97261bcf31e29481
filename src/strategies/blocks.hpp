// Building blocks shared by the strategies: weight shards generated on the host and uploaded,
// the attention block over a subset of heads with its KV cache, and a bank of experts (whole or
// column/row sharded) that runs permuted token rows through each expert.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/config.hpp"
#include "model/generator.hpp"
#include "routing/routing_source.hpp"
#include "schedule/phase.hpp"

namespace moe {

// Block [row0, +rows) x [col0, +cols) of weight (layer, kind, expert), uploaded to the device.
DeviceMat load_weight(ComputeBackend& compute, const ModelConfig& m, int layer, WeightKind kind, int expert,
                      int64_t row0, int64_t rows, int64_t col0, int64_t cols);

// Scratch shared by every block on one compute backend: layers run one after another on the compute
// stream and each block uses its scratch only inside one call, so one buffer per purpose (sized for
// the largest user) serves every layer. Blocks hold the arena; it is freed with the last of them.
class ScratchArena {
 public:
  explicit ScratchArena(ComputeBackend& compute) : compute_(compute) {}
  // The arena of `compute`, shared with every live block on it (made on first use).
  static std::shared_ptr<ScratchArena> of(ComputeBackend& compute);
  // Makes `purpose` hold at least rows x cols elements (at construction, before work is queued).
  void reserve(const std::string& purpose, int64_t rows, int64_t cols);
  // [rows x cols] view of the purpose's buffer; rows * cols must not exceed what was reserved.
  Mat get(const std::string& purpose, int64_t rows, int64_t cols) const;
  // The same for int32 index and fp32 weight vectors.
  void reserve_vectors(const std::string& purpose, int64_t size);
  IndexVec index(const std::string& purpose, int64_t size) const;
  WeightVec weights(const std::string& purpose, int64_t size) const;

 private:
  ComputeBackend& compute_;
  std::map<std::string, DeviceMat> buffers_;  // each [1 x capacity elements]
  std::map<std::string, std::pair<DeviceIndex, DeviceWeights>> vectors_;
};

// Attention over heads [head0, head0+num_heads) for `num_seq` sequences with a KV cache of
// `max_len` positions. forward() writes the partial output (these heads' contribution through the
// matching rows of Wo); with all heads it is the full Attn(z).
class AttentionBlock {
 public:
  AttentionBlock(ComputeBackend& compute, const ModelConfig& m, int layer, int head0, int num_heads, int num_seq,
                 int max_len, int64_t max_tokens);
  // z: [n_seq*new_len x d] rows of sequences [seq0, seq0+n_seq), out: [same rows x d].
  void forward(const Mat& z, int seq0, int n_seq, int past_len, int new_len, const Mat& out);

 private:
  ComputeBackend& compute_;
  int num_heads_, head_dim_, max_len_;
  DeviceMat wq_, wk_, wv_, wo_;
  DeviceMat k_cache_, v_cache_;
  std::shared_ptr<ScratchArena> scratch_;  // q, k, v, ctx: [max_tokens x num_heads*head_dim]
};

// Experts `experts` of one layer, each holding W1 columns [col0, col0+cols) and the matching W2
// rows (the whole expert when cols == ffn_hidden). run() computes, for rows grouped by expert,
// out = silu(x · W1_e) · W2_e segment by segment.
class ExpertBank {
 public:
  ExpertBank(ComputeBackend& compute, const ModelConfig& m, int layer, const std::vector<int>& experts, int64_t col0,
             int64_t cols, int64_t max_rows);
  // x, out: [sum(rows_per_expert) x d]; rows_per_expert: [experts.size()] in bank order.
  void run(const Mat& x, const std::vector<int64_t>& rows_per_expert, const Mat& out);
  const std::vector<int>& experts() const { return experts_; }

 private:
  ComputeBackend& compute_;
  std::vector<int> experts_;
  std::vector<DeviceMat> w1_, w2_;
  int64_t block_rows_, cols_;              // hidden scratch: [block_rows x cols]
  std::shared_ptr<ScratchArena> scratch_;
};

// Device matrix whose row capacity grows on demand (geometrically, so reallocation is rare):
// for buffers whose size depends on routing, such as the rows an expert-parallel rank receives.
class GrowableMat {
 public:
  GrowableMat(ComputeBackend& compute, int64_t initial_rows, int64_t cols);
  Mat rows(int64_t n);  // view of the first n rows, reallocating (contents lost) if n > capacity

 private:
  ComputeBackend& compute_;
  int64_t cols_;
  DeviceMat mat_;
};

// Gate logits for rows z [T x d] through Wg (replicated). Routed by the gate itself, the per-token
// rule runs on the device and only each token's k experts and weights come back; a synthetic
// workload or a replayed trace needs the probabilities on the host (softmax there, then the
// source's choice). The host's part of routing (the softmax and the source's choice, or counting the
// device's choice) is host work of the gate phase on `timer`.
class Gate {
 public:
  Gate(ComputeBackend& compute, const ModelConfig& m, int layer, int64_t max_tokens, const RoutingSource& source);
  // z holds the rows of `block` (block.layer is this gate's layer).
  Routing route(const Mat& z, const TokenBlock& block, const std::vector<double>& multipliers, PhaseTimer& timer);

 private:
  ComputeBackend& compute_;
  const ModelConfig& model_;
  const RoutingSource& source_;
  int layer_;
  DeviceMat wg_;
  // logits: [max_tokens x E]; the device gate's choice and weights: [max_tokens * k] each
  std::shared_ptr<ScratchArena> scratch_;
  std::vector<float> host_logits_;
};

}  // namespace moe
