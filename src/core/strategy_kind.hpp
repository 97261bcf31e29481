// The strategy kinds and the config keys each one owns, in one table. Code that depends on the kind
// switches on StrategyKind (the compiler names every switch a new kind must extend); the config's
// spelling ("tp_pp", "ep") appears only here.
#pragma once
#include <string>
#include <vector>

#include "core/error.hpp"

namespace moe {

enum class StrategyKind { tp_pp, ep };

struct StrategyKindInfo {
  StrategyKind kind;
  const char* name;                         // the config's and the results' spelling
  std::vector<std::string> keys;            // keys of this kind besides name, kind, overlap, load_balancing
  std::vector<std::string> overlap_modes;   // allowed values of `overlap`, the default first
};

inline const std::vector<StrategyKindInfo>& strategy_kinds() {
  static const std::vector<StrategyKindInfo> kinds = {
      {StrategyKind::tp_pp, "tp_pp", {"tp", "pp", "microbatches"}, {"none", "pipelined"}},
      {StrategyKind::ep, "ep", {"ep", "expert_tp", "chunks", "immediate_routing", "placement", "placement_profile"},
       {"none", "chunked", "two_batch"}},
  };
  return kinds;
}

inline std::vector<std::string> strategy_kind_names() {
  std::vector<std::string> names;
  for (const StrategyKindInfo& k : strategy_kinds()) names.push_back(k.name);
  return names;
}

// The kind spelled `name`, or nullptr.
inline const StrategyKindInfo* find_strategy_kind(const std::string& name) {
  for (const StrategyKindInfo& k : strategy_kinds())
    if (name == k.name) return &k;
  return nullptr;
}

// The kind spelled `name`; a ConfigError at `path` naming the allowed kinds otherwise.
inline const StrategyKindInfo& strategy_kind_info(const std::string& name, const std::string& path = "strategies[].kind") {
  if (const StrategyKindInfo* k = find_strategy_kind(name)) return *k;
  std::string allowed;
  for (const StrategyKindInfo& k : strategy_kinds()) allowed += (allowed.empty() ? "" : " | ") + std::string(k.name);
  throw ConfigError(path, "unknown strategy kind '" + name + "' (allowed kinds: " + allowed + ")");
}

inline const StrategyKindInfo& strategy_kind_info(StrategyKind kind) {
  for (const StrategyKindInfo& k : strategy_kinds())
    if (k.kind == kind) return k;
  throw Error("strategy kind missing from strategy_kinds()");
}

inline const char* strategy_kind_name(StrategyKind kind) { return strategy_kind_info(kind).name; }

}  // namespace moe
