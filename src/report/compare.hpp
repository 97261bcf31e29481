// `compare`'s model: loading results files (schema checks that name the file and the reason) and
// building one row per (results document, strategy) with ratios against a baseline strategy and the
// prediction error between measured and simulated documents of the same config.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace moe {

inline constexpr int kResultsSchemaVersion = 1;

// One results document. A `simulate --sweep` file holds an array of them: label "file[i]".
struct ResultsDocument {
  std::string label;      // the path as given, with "[i]" for an element of a sweep array
  nlohmann::json doc;
};

// Reads `path` and checks every document in it (see check_results_document). Throws ConfigError
// with the path as its location and the reason: unreadable, not JSON, not a moe-bench results
// file, another schema_version, a required field missing.
std::vector<ResultsDocument> load_results_file(const std::string& path);
// Parses already-read text; `path` only names the file in errors.
std::vector<ResultsDocument> parse_results_text(const std::string& text, const std::string& path);
// Throws ConfigError(label, reason) unless `doc` is a schema_version 1 moe-bench results document
// with the fields compare reads.
void check_results_document(const nlohmann::json& doc, const std::string& label);

struct CompareRow {
  std::string file;            // ResultsDocument::label
  std::string config_name;     // config.name
  std::string mode;            // measured | simulated
  std::string backend;         // cpu | cuda
  int world_size = 0;
  std::string strategy;        // strategies[].name
  std::string kind;            // tp_pp | ep | ...
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  double tpot_mean_ms = 0;
  double tpot_p99_ms = 0;
  // Against the baseline strategy of the same document; empty when the document has none.
  std::string baseline;
  std::optional<double> decode_tps_ratio;    // this decode TPS / baseline's (> 1: faster)
  std::optional<double> prefill_tps_ratio;   // this prefill TPS / baseline's
  std::optional<double> tpot_vs_baseline;    // this TPOT mean / baseline's (< 1: faster)
  std::optional<double> gpu_balancedness;    // load.min_gpu_balancedness (mean/max tokens per GPU, worst layer)
  std::optional<double> overlap_decode;      // overlap.decode_step.efficiency
  std::optional<double> overlap_prefill;     // overlap.prefill.efficiency
  // phases_ms.decode_step.<phase>.mean (ms per decode step, mean over ranks), in results order;
  // empty when the results have none. Drawn by the HTML report, not a table column.
  std::vector<std::pair<std::string, double>> decode_phase_ms;
  bool verified = false;                     // verification.checked
  std::optional<double> max_rel_error;       // verification.max_rel_error when checked
  std::optional<bool> passed;                // verification.passed when checked
  // Measured vs simulated documents with the same config name, strategy name and world size:
  // (simulated - measured) / measured of the TPOT mean and of the prefill TPS; on both rows.
  std::string counterpart;                   // label of the other document; empty when none
  std::optional<double> tpot_prediction_error;
  std::optional<double> prefill_tps_prediction_error;
};

struct CompareOptions {
  std::string baseline;   // strategy name; empty: each document's first strategy
};

struct CompareTable {
  std::vector<CompareRow> rows;
  std::vector<std::string> notes;   // e.g. a document without the requested baseline
};

// Rows in input order (documents, then their strategies). Throws ConfigError("--baseline", ...)
// when a baseline is named and no document has a strategy of that name.
CompareTable build_compare_table(const std::vector<ResultsDocument>& docs, const CompareOptions& options);

// The phases of a layer in the order they run (results phases_ms keys); others sort after them.
const std::vector<std::string>& phase_order();
// Position of `phase` in phase_order() (its size for any other phase).
size_t phase_rank(const std::string& phase);

// (predicted - measured) / measured; nullopt when measured is not positive.
std::optional<double> relative_error(double predicted, double measured);

}  // namespace moe
