// Text renderings of compare's rows: the column definitions, the aligned table, markdown, csv, json.
#include "report/compare_format.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.hpp"
#include "report/results.hpp"

namespace moe {
namespace {

std::string printf_string(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string optional_fixed(const std::optional<double>& v, const char* format) {
  return v ? printf_string(format, *v) : "-";
}

std::string verify_text(const CompareRow& r) {
  if (!r.verified) return "-";
  std::string s = r.passed ? (*r.passed ? "PASS" : "FAIL") : "?";
  if (r.max_rel_error) s += " " + printf_string("%.1e", *r.max_rel_error);
  return s;
}

std::string overlap_text(const CompareRow& r) {
  if (!r.overlap_decode && !r.overlap_prefill) return "-";
  return optional_fixed(r.overlap_decode, "%.2f") + "/" + optional_fixed(r.overlap_prefill, "%.2f");
}

nlohmann::ordered_json opt(const std::optional<double>& v) { return v ? nlohmann::ordered_json(*v) : nullptr; }

}  // namespace

std::string format_rate(double v) {
  if (!std::isfinite(v)) return printf_string("%g", v);
  if (std::fabs(v) < 100) return printf_string("%.1f", v);
  std::string digits = printf_string("%.0f", std::fabs(v));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

std::string format_ms(double v) {
  if (!std::isfinite(v) || v == 0) return printf_string("%g", v);
  const int magnitude = static_cast<int>(std::floor(std::log10(std::fabs(v))));
  const int decimals = std::clamp(2 - magnitude, 0, 6);
  return printf_string(("%." + std::to_string(decimals) + "f").c_str(), v);
}

std::string format_ratio(const std::optional<double>& v) { return v ? printf_string("%.2f", *v) + "x" : "-"; }

std::string format_percent(const std::optional<double>& v) { return v ? printf_string("%+.1f", *v * 100) + "%" : "-"; }

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

const std::vector<CompareColumn>& compare_columns() {
  static const std::vector<CompareColumn> columns = {
      {"file", "file", false, [](const CompareRow& r) { return r.file; }},
      {"config", "config", false, [](const CompareRow& r) { return r.config_name; }},
      {"mode", "mode", false, [](const CompareRow& r) { return r.mode; }},
      {"backend", "backend", false, [](const CompareRow& r) { return r.backend; }},
      {"ranks", "ranks", true, [](const CompareRow& r) { return std::to_string(r.world_size); }},
      {"strategy", "strategy", false, [](const CompareRow& r) { return r.strategy; }},
      {"prefill tok/s", "prefill-toks", true, [](const CompareRow& r) { return format_rate(r.prefill_tokens_per_s); }},
      {"decode tok/s", "decode-toks", true, [](const CompareRow& r) { return format_rate(r.decode_tokens_per_s); }},
      {"TPOT ms", "tpot-ms", true, [](const CompareRow& r) { return format_ms(r.tpot_mean_ms); }},
      {"p99 ms", "p99-ms", true, [](const CompareRow& r) { return format_ms(r.tpot_p99_ms); }},
      {"baseline", "baseline", false, [](const CompareRow& r) { return r.baseline.empty() ? "-" : r.baseline; }},
      {"decode x", "decode-x", true, [](const CompareRow& r) { return format_ratio(r.decode_tps_ratio); }},
      {"TPOT x", "tpot-x", true, [](const CompareRow& r) { return format_ratio(r.tpot_vs_baseline); }},
      {"prefill x", "prefill-x", true, [](const CompareRow& r) { return format_ratio(r.prefill_tps_ratio); }},
      {"GPU bal", "gpu-bal", true, [](const CompareRow& r) { return optional_fixed(r.gpu_balancedness, "%.3f"); }},
      {"overlap d/p", "overlap-dp", true, overlap_text},
      {"verify", "verify", false, verify_text},
      {"TPOT pred err", "tpot-pred-err", true, [](const CompareRow& r) { return format_percent(r.tpot_prediction_error); }},
  };
  return columns;
}

nlohmann::ordered_json compare_row_json(const CompareRow& r) {
  nlohmann::ordered_json j;
  j["file"] = r.file;
  j["config"] = r.config_name;
  j["mode"] = r.mode;
  j["backend"] = r.backend;
  j["world_size"] = r.world_size;
  j["strategy"] = r.strategy;
  j["kind"] = r.kind;
  j["prefill_tokens_per_s"] = r.prefill_tokens_per_s;
  j["decode_tokens_per_s"] = r.decode_tokens_per_s;
  j["tpot_mean_ms"] = r.tpot_mean_ms;
  j["tpot_p99_ms"] = r.tpot_p99_ms;
  j["baseline"] = r.baseline.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.baseline);
  j["decode_tps_ratio"] = opt(r.decode_tps_ratio);
  j["tpot_vs_baseline"] = opt(r.tpot_vs_baseline);
  j["prefill_tps_ratio"] = opt(r.prefill_tps_ratio);
  j["gpu_balancedness"] = opt(r.gpu_balancedness);
  j["overlap_decode_efficiency"] = opt(r.overlap_decode);
  j["overlap_prefill_efficiency"] = opt(r.overlap_prefill);
  j["verification_checked"] = r.verified;
  j["max_rel_error"] = opt(r.max_rel_error);
  j["verification_passed"] = r.passed ? nlohmann::ordered_json(*r.passed) : nlohmann::ordered_json(nullptr);
  j["prediction_counterpart"] = r.counterpart.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.counterpart);
  j["tpot_prediction_error"] = opt(r.tpot_prediction_error);
  j["prefill_tps_prediction_error"] = opt(r.prefill_tps_prediction_error);
  return j;
}

std::string format_compare_text(const CompareTable& t) {
  const auto& cols = compare_columns();
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> width(cols.size());
  for (size_t c = 0; c < cols.size(); ++c) width[c] = cols[c].header.size();
  for (const CompareRow& r : t.rows) {
    std::vector<std::string> line;
    for (size_t c = 0; c < cols.size(); ++c) {
      line.push_back(cols[c].text(r));
      width[c] = std::max(width[c], line.back().size());
    }
    cells.push_back(std::move(line));
  }
  std::ostringstream out;
  auto emit = [&](const std::vector<std::string>& line) {
    std::string s;
    for (size_t c = 0; c < cols.size(); ++c) {
      const std::string pad(width[c] - line[c].size(), ' ');
      s += (c ? "  " : "") + (cols[c].numeric ? pad + line[c] : line[c] + pad);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << "\n";
  };
  std::vector<std::string> header;
  for (const auto& c : cols) header.push_back(c.header);
  emit(header);
  for (const auto& line : cells) emit(line);
  out << "\nx: this strategy / the baseline of the same file (decode and prefill tok/s: > 1 is faster; TPOT: < 1 is "
         "faster). overlap d/p: decode/prefill overlap efficiency. TPOT pred err: (simulated - measured) / measured, "
         "same config and strategy. Columns: "
      << kCompareDocs << "\n";
  for (const std::string& n : t.notes) out << "note: " << n << "\n";
  return out.str();
}

std::string format_compare_markdown(const CompareTable& t) {
  const auto& cols = compare_columns();
  std::ostringstream out;
  auto md = [](std::string s) {  // a pipe would end the cell
    for (size_t p = 0; (p = s.find('|', p)) != std::string::npos; p += 2) s.replace(p, 1, "\\|");
    return s;
  };
  out << "|";
  for (const auto& c : cols) out << " [" << c.header << "](" << kCompareDocs << "#" << c.anchor << ") |";
  out << "\n|";
  for (const auto& c : cols) out << (c.numeric ? "---:|" : "---|");
  out << "\n";
  for (const CompareRow& r : t.rows) {
    out << "|";
    for (const auto& c : cols) out << " " << md(c.text(r)) << " |";
    out << "\n";
  }
  for (const std::string& n : t.notes) out << "\nNote: " << md(n) << "\n";
  return out.str();
}

std::string format_compare_csv(const CompareTable& t) {
  std::ostringstream out;
  const nlohmann::ordered_json keys = compare_row_json(CompareRow{});
  bool first = true;
  for (const auto& [k, v] : keys.items()) {
    out << (first ? "" : ",") << k;
    first = false;
  }
  out << "\n";
  for (const CompareRow& r : t.rows) {
    first = true;
    const nlohmann::ordered_json fields = compare_row_json(r);  // outlives the loop over its items
    for (const auto& [k, v] : fields.items()) {
      std::string cell;
      if (v.is_string()) cell = v.get<std::string>();
      else if (v.is_null()) cell = "";
      else if (v.is_number_float()) cell = printf_string("%.17g", v.get<double>());
      else cell = v.dump();
      out << (first ? "" : ",") << csv_escape(cell);
      first = false;
    }
    out << "\n";
  }
  return out.str();
}

std::string format_compare_json(const CompareTable& t, const std::vector<std::string>& files) {
  nlohmann::ordered_json j;
  j["compare_version"] = 1;
  j["tool"] = {{"name", "moe-bench"}, {"version", tool_version()}};
  j["files"] = files;
  j["rows"] = nlohmann::ordered_json::array();
  for (const CompareRow& r : t.rows) j["rows"].push_back(compare_row_json(r));
  j["notes"] = t.notes;
  return j.dump(2) + "\n";
}

std::string format_compare(const CompareTable& t, const std::string& format, const std::vector<std::string>& files) {
  if (format == "table") return format_compare_text(t);
  if (format == "markdown") return format_compare_markdown(t);
  if (format == "csv") return format_compare_csv(t);
  if (format == "json") return format_compare_json(t, files);
  if (format == "html") return format_compare_html(t, files);
  throw ConfigError("--format", "must be table, markdown, csv, json or html, got '" + format + "'");
}

}  // namespace moe
