// `compare`'s renderings of a CompareTable: aligned text, markdown, csv, json and a self-contained
// HTML page with inline SVG charts. Each column is defined once (compare_columns) for text and
// markdown; csv and json share the machine-readable fields of compare_row_json.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/compare.hpp"

namespace moe {

// Where the results README documents compare's columns (markdown and html headers link there).
inline constexpr const char* kCompareDocs = "results/README.md";

struct CompareColumn {
  std::string header;          // as printed
  std::string anchor;          // section of kCompareDocs describing it
  bool numeric = true;         // right-aligned
  std::function<std::string(const CompareRow&)> text;
};

const std::vector<CompareColumn>& compare_columns();

// Machine-readable fields of one row (json rows, csv columns in this order); null where absent.
nlohmann::ordered_json compare_row_json(const CompareRow& r);

std::string format_compare_text(const CompareTable& t);
std::string format_compare_markdown(const CompareTable& t);
std::string format_compare_csv(const CompareTable& t);
std::string format_compare_json(const CompareTable& t, const std::vector<std::string>& files);
std::string format_compare_html(const CompareTable& t, const std::vector<std::string>& files);
// Dispatch on "table" | "markdown" | "csv" | "json" | "html".
std::string format_compare(const CompareTable& t, const std::string& format, const std::vector<std::string>& files);

// Cell helpers (exposed for tests): "-" stands for an absent value.
std::string format_rate(double tokens_per_s);        // 5,664 / 12.5
std::string format_ms(double ms);                    // 3 significant digits, no exponent
std::string format_ratio(const std::optional<double>& v);     // 1.44x
std::string format_percent(const std::optional<double>& v);   // +12.3%
std::string csv_escape(const std::string& s);
std::string html_escape(const std::string& s);

}  // namespace moe
