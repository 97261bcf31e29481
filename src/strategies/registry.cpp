// Strategy registry (kind name -> implementation) and the choice recording every strategy shares.
#include "core/error.hpp"
#include "strategies/strategy.hpp"

namespace moe {

std::unique_ptr<Strategy> make_tp_pp_strategy(const StrategyContext& ctx);
std::unique_ptr<Strategy> make_ep_strategy(const StrategyContext& ctx);

void Strategy::begin_step_choices(int num_layers, int64_t step_tokens, int top_k) {
  if (!record_choices_) {
    step_load_.choices.clear();
    return;
  }
  step_load_.choices.assign(num_layers, std::vector<int32_t>(static_cast<size_t>(step_tokens) * top_k, 0));
}

void Strategy::record_choices(int l, int64_t token0, const Routing& r) {
  if (!record_choices_) return;
  std::vector<int32_t>& dst = step_load_.choices.at(l);
  const size_t first = static_cast<size_t>(token0) * r.top_k;
  MOE_REQUIRE(first + r.expert.size() <= dst.size(), "record_choices: tokens beyond the step");
  for (size_t a = 0; a < r.expert.size(); ++a) dst[first + a] = r.expert[a] + 1;
}

std::unique_ptr<Strategy> make_strategy(const StrategyContext& ctx) {
  switch (kind_of(ctx.spec)) {  // a ConfigError naming the allowed kinds for any other spelling
    case StrategyKind::tp_pp: return make_tp_pp_strategy(ctx);
    case StrategyKind::ep: return make_ep_strategy(ctx);
  }
  throw Error("make_strategy: no factory for strategy kind '" + ctx.spec.kind + "'");
}

}  // namespace moe
