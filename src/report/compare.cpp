// Loading and checking results files for `compare`, and the rows it prints: ratios against a
// baseline strategy per document and measured-vs-simulated prediction errors across documents.
#include "report/compare.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "core/error.hpp"

namespace moe {
namespace {

using json = nlohmann::json;

// The value at a dotted path ("decode.tpot_ms.mean"), or nullptr when a step is missing.
const json* find_path(const json& j, const std::string& dotted) {
  const json* at = &j;
  std::stringstream ss(dotted);
  for (std::string key; std::getline(ss, key, '.');) {
    if (!at->is_object() || !at->contains(key)) return nullptr;
    at = &(*at)[key];
  }
  return at;
}

void require_number(const json& j, const std::string& dotted, const std::string& label, const std::string& prefix) {
  const json* v = find_path(j, dotted);
  if (v == nullptr) throw ConfigError(label, prefix + dotted + " is missing");
  if (!v->is_number()) throw ConfigError(label, prefix + dotted + " must be a number, got " + v->dump());
}

void require_string(const json& j, const std::string& dotted, const std::string& label, const std::string& prefix) {
  const json* v = find_path(j, dotted);
  if (v == nullptr) throw ConfigError(label, prefix + dotted + " is missing");
  if (!v->is_string()) throw ConfigError(label, prefix + dotted + " must be a string, got " + v->dump());
}

std::optional<double> number_at(const json& j, const std::string& dotted) {
  const json* v = find_path(j, dotted);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

// What a JSON object that is not a results document most likely is, for the error message.
std::string not_results_reason(const json& doc) {
  const std::string base = "not a moe-bench results file";
  if (!doc.is_object()) return base + " (the top level is " + std::string(doc.type_name()) + ", not an object)";
  if (doc.contains("algorithm") && doc.contains("layers"))
    return base + " (it looks like a placement plan written by `place`)";
  if (doc.contains("model") && doc.contains("cluster") && !doc.contains("tool"))
    return base + " (it looks like a config; run it to get results)";
  if (doc.contains("traceEvents")) return base + " (it looks like a Chrome trace)";
  const json* name = find_path(doc, "tool.name");
  if (name == nullptr) return base + " (no tool.name \"moe-bench\")";
  return base + " (tool.name is " + name->dump() + ", not \"moe-bench\")";
}

}  // namespace

void check_results_document(const json& doc, const std::string& label) {
  const json* name = find_path(doc, "tool.name");
  if (!doc.is_object() || name == nullptr || *name != "moe-bench") throw ConfigError(label, not_results_reason(doc));
  if (!doc.contains("schema_version")) throw ConfigError(label, "schema_version is missing");
  const json& v = doc["schema_version"];
  if (!v.is_number_integer() || v.get<int64_t>() != kResultsSchemaVersion)
    throw ConfigError(label, "schema_version " + v.dump() + " is not supported (this moe-bench reads schema_version " +
                                 std::to_string(kResultsSchemaVersion) + ")");
  require_string(doc, "context.mode", label, "");
  require_string(doc, "context.backend", label, "");
  require_number(doc, "context.world_size", label, "");
  require_string(doc, "config.name", label, "");
  if (!doc.contains("strategies") || !doc["strategies"].is_array() || doc["strategies"].empty())
    throw ConfigError(label, "strategies must be a non-empty array");
  for (size_t i = 0; i < doc["strategies"].size(); ++i) {
    const json& s = doc["strategies"][i];
    const std::string prefix = "strategies[" + std::to_string(i) + "].";
    if (!s.is_object()) throw ConfigError(label, prefix.substr(0, prefix.size() - 1) + " must be an object");
    require_string(s, "name", label, prefix);
    require_string(s, "kind", label, prefix);
    require_number(s, "prefill.tokens_per_s", label, prefix);
    require_number(s, "decode.tokens_per_s", label, prefix);
    require_number(s, "decode.tpot_ms.mean", label, prefix);
    require_number(s, "decode.tpot_ms.p99", label, prefix);
    const json* checked = find_path(s, "verification.checked");
    if (checked == nullptr || !checked->is_boolean())
      throw ConfigError(label, prefix + "verification.checked is missing or not a boolean");
  }
}

std::vector<ResultsDocument> parse_results_text(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ConfigError(path, std::string("not valid JSON (") + e.what() + ")");
  }
  std::vector<ResultsDocument> docs;
  if (j.is_array()) {  // simulate --sweep: one document per cluster size
    if (j.empty()) throw ConfigError(path, "not a moe-bench results file (an empty array)");
    for (size_t i = 0; i < j.size(); ++i) {
      const std::string label = path + "[" + std::to_string(i) + "]";
      check_results_document(j[i], label);
      docs.push_back({label, std::move(j[i])});
    }
  } else {
    check_results_document(j, path);
    docs.push_back({path, std::move(j)});
  }
  return docs;
}

std::vector<ResultsDocument> load_results_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path, "cannot open results file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_results_text(ss.str(), path);
}

const std::vector<std::string>& phase_order() {
  static const std::vector<std::string> order = {"attention",    "gate",        "dispatch", "expert", "combine",
                                                 "tp_allreduce", "pp_transfer", "other",    "idle"};
  return order;
}

size_t phase_rank(const std::string& phase) {
  const auto& order = phase_order();
  return static_cast<size_t>(std::find(order.begin(), order.end(), phase) - order.begin());
}

std::optional<double> relative_error(double predicted, double measured) {
  if (!(measured > 0)) return std::nullopt;
  return (predicted - measured) / measured;
}

CompareTable build_compare_table(const std::vector<ResultsDocument>& docs, const CompareOptions& options) {
  CompareTable table;
  bool baseline_found = options.baseline.empty();
  for (const ResultsDocument& d : docs) {
    const json& strategies = d.doc["strategies"];
    // The baseline of this document: the named strategy, else the first.
    const json* base = options.baseline.empty() ? &strategies[0] : nullptr;
    for (const json& s : strategies)
      if (base == nullptr && s["name"] == options.baseline) base = &s;
    if (base == nullptr) {
      table.notes.push_back(d.label + ": no strategy named '" + options.baseline + "'; its ratios are left empty");
    } else {
      baseline_found = true;
    }
    for (const json& s : strategies) {
      CompareRow r;
      r.file = d.label;
      r.config_name = d.doc["config"]["name"].get<std::string>();
      r.mode = d.doc["context"]["mode"].get<std::string>();
      r.backend = d.doc["context"]["backend"].get<std::string>();
      r.world_size = d.doc["context"]["world_size"].get<int>();
      r.strategy = s["name"].get<std::string>();
      r.kind = s["kind"].get<std::string>();
      r.prefill_tokens_per_s = s["prefill"]["tokens_per_s"].get<double>();
      r.decode_tokens_per_s = s["decode"]["tokens_per_s"].get<double>();
      r.tpot_mean_ms = s["decode"]["tpot_ms"]["mean"].get<double>();
      r.tpot_p99_ms = s["decode"]["tpot_ms"]["p99"].get<double>();
      if (base != nullptr) {
        r.baseline = (*base)["name"].get<std::string>();
        const double base_decode = (*base)["decode"]["tokens_per_s"].get<double>();
        const double base_prefill = (*base)["prefill"]["tokens_per_s"].get<double>();
        const double base_tpot = (*base)["decode"]["tpot_ms"]["mean"].get<double>();
        if (base_decode > 0) r.decode_tps_ratio = r.decode_tokens_per_s / base_decode;
        if (base_prefill > 0) r.prefill_tps_ratio = r.prefill_tokens_per_s / base_prefill;
        if (base_tpot > 0) r.tpot_vs_baseline = r.tpot_mean_ms / base_tpot;
      }
      r.gpu_balancedness = number_at(s, "load.min_gpu_balancedness");
      r.overlap_decode = number_at(s, "overlap.decode_step.efficiency");
      r.overlap_prefill = number_at(s, "overlap.prefill.efficiency");
      if (const json* phases = find_path(s, "phases_ms.decode_step"); phases != nullptr && phases->is_object()) {
        for (const auto& [phase, v] : phases->items())
          if (const auto mean = number_at(v, "mean")) r.decode_phase_ms.emplace_back(phase, *mean);
        std::stable_sort(r.decode_phase_ms.begin(), r.decode_phase_ms.end(),
                         [](const auto& a, const auto& b) { return phase_rank(a.first) < phase_rank(b.first); });
      }
      r.verified = s["verification"]["checked"].get<bool>();
      if (r.verified) {
        r.max_rel_error = number_at(s, "verification.max_rel_error");
        const json* p = find_path(s, "verification.passed");
        if (p != nullptr && p->is_boolean()) r.passed = p->get<bool>();
      }
      table.rows.push_back(std::move(r));
    }
  }
  if (!baseline_found) throw ConfigError("--baseline", "no results file has a strategy named '" + options.baseline + "'");

  // Prediction error: each measured row against the first simulated row of the same config name,
  // strategy name and world size (a sweep file holds one config at several sizes), and each
  // simulated row against the first measured one.
  using Key = std::tuple<std::string, std::string, int>;
  std::map<Key, const CompareRow*> first_measured, first_simulated;
  for (const CompareRow& r : table.rows) {
    auto& first = r.mode == "simulated" ? first_simulated : first_measured;
    first.emplace(Key{r.config_name, r.strategy, r.world_size}, &r);
  }
  for (CompareRow& r : table.rows) {
    const bool simulated = r.mode == "simulated";
    const auto& others = simulated ? first_measured : first_simulated;
    const auto it = others.find(Key{r.config_name, r.strategy, r.world_size});
    if (it == others.end()) continue;
    const CompareRow& measured = simulated ? *it->second : r;
    const CompareRow& predicted = simulated ? r : *it->second;
    r.counterpart = it->second->file;
    r.tpot_prediction_error = relative_error(predicted.tpot_mean_ms, measured.tpot_mean_ms);
    r.prefill_tps_prediction_error = relative_error(predicted.prefill_tokens_per_s, measured.prefill_tokens_per_s);
  }
  return table;
}

}  // namespace moe
