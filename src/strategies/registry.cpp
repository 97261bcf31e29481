// Strategy registry: kind name -> implementation.
#include "core/error.hpp"
#include "strategies/strategy.hpp"

namespace moe {

std::unique_ptr<Strategy> make_tp_pp_strategy(const StrategyContext& ctx);
std::unique_ptr<Strategy> make_ep_strategy(const StrategyContext& ctx);

std::unique_ptr<Strategy> make_strategy(const StrategyContext& ctx) {
  if (ctx.spec.kind == "tp_pp") return make_tp_pp_strategy(ctx);
  if (ctx.spec.kind == "ep") return make_ep_strategy(ctx);
  throw ConfigError("strategies[].kind", "unknown strategy kind '" + ctx.spec.kind + "' (tp_pp | ep)");
}

}  // namespace moe
