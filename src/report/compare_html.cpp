// compare --format html: one self-contained page (inline CSS, inline SVG charts, no script, no
// network) with the comparison table and bar charts of decode throughput, TPOT, the ratio against
// the baseline and measured-vs-simulated TPOT.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>

#include "report/compare_format.hpp"
#include "report/results.hpp"

namespace moe {
namespace {

struct Bar {
  std::string label;                // left of the bar
  double value = 0;                 // bar length
  std::string color;
  std::optional<double> marker;     // a tick on the bar (e.g. p99)
  std::string text;                 // right of the bar
};

// Horizontal bar chart. A log axis when the values span more than two decades, so a CPU run and a
// simulated H100 cluster fit in one chart; `reference` draws a dashed line (e.g. ratio 1).
std::string svg_bar_chart(const std::string& title, const std::string& unit, const std::vector<Bar>& bars,
                          std::optional<double> reference = std::nullopt) {
  size_t longest = 0;
  for (const Bar& b : bars) longest = std::max(longest, b.label.size());
  // ~6.6 px per character at font-size 12 (sans-serif), so labels are not clipped.
  const double label_w = std::max(160.0, 6.6 * static_cast<double>(longest) + 16), plot_w = 420, text_w = 150;
  const double row_h = 22, top = 34, bottom = 30;
  const double width = label_w + plot_w + text_w, height = top + bottom + row_h * bars.size();
  double lo = 0, hi = 0;
  bool any = false;
  for (const Bar& b : bars) {
    if (!(b.value > 0)) continue;
    const double v_hi = std::max(b.value, b.marker.value_or(0));
    lo = any ? std::min(lo, b.value) : b.value;
    hi = any ? std::max(hi, v_hi) : v_hi;
    any = true;
  }
  if (reference) {
    hi = std::max(hi, *reference);
    lo = any ? std::min(lo, *reference) : *reference;
    any = true;
  }
  const bool log_axis = any && hi / lo > 100;
  // Linear axis: 1, 2 or 5 times a power of ten per tick, about five ticks.
  double axis_lo = 0, axis_hi = 1, tick_step = 0.2;
  if (log_axis) {
    axis_lo = std::pow(10, std::floor(std::log10(lo)));
    axis_hi = std::pow(10, std::ceil(std::log10(hi)));
  } else if (hi > 0) {
    const double raw = hi / 5, decade = std::pow(10, std::floor(std::log10(raw)));
    tick_step = (raw <= decade ? 1 : raw <= 2 * decade ? 2 : raw <= 5 * decade ? 5 : 10) * decade;
    axis_hi = std::ceil(hi / tick_step - 1e-9) * tick_step;
  }
  auto x_of = [&](double v) {
    if (!(v > 0)) return label_w;
    const double f = log_axis ? (std::log10(v) - std::log10(axis_lo)) / (std::log10(axis_hi) - std::log10(axis_lo))
                              : v / axis_hi;
    return label_w + plot_w * std::clamp(f, 0.0, 1.0);
  };
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 "
    << width << " " << height << "\" role=\"img\" aria-label=\"" << html_escape(title) << "\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  s << "<text x=\"8\" y=\"20\" font-size=\"15\" font-weight=\"bold\">" << html_escape(title) << "</text>\n";
  // Axis ticks: decades on a log axis, five steps on a linear one.
  std::vector<double> ticks;
  if (log_axis) {
    for (double t = axis_lo; t <= axis_hi * 1.0001; t *= 10) ticks.push_back(t);
  } else {
    for (double t = 0; t <= axis_hi + tick_step / 2; t += tick_step) ticks.push_back(t);
  }
  const double axis_y = top + row_h * bars.size();
  for (double t : ticks) {
    const double x = x_of(t > 0 ? t : 0);
    s << "<line x1=\"" << x << "\" y1=\"" << top - 4 << "\" x2=\"" << x << "\" y2=\"" << axis_y
      << "\" stroke=\"#dddddd\"/>\n";
    s << "<text x=\"" << x << "\" y=\"" << axis_y + 16 << "\" font-size=\"11\" text-anchor=\"middle\">"
      << html_escape(t >= 1000 ? format_rate(t) : format_ms(t)) << "</text>\n";
  }
  s << "<text x=\"" << label_w + plot_w << "\" y=\"" << axis_y + 28 << "\" font-size=\"11\" text-anchor=\"end\">"
    << html_escape(unit + (log_axis ? " (log scale)" : "")) << "</text>\n";
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const double y = top + row_h * i;
    s << "<text x=\"" << label_w - 6 << "\" y=\"" << y + 15 << "\" font-size=\"12\" text-anchor=\"end\">"
      << html_escape(b.label) << "</text>\n";
    s << "<rect x=\"" << label_w << "\" y=\"" << y + 3 << "\" width=\"" << std::max(0.0, x_of(b.value) - label_w)
      << "\" height=\"" << row_h - 6 << "\" fill=\"" << b.color << "\"><title>" << html_escape(b.label + ": " + b.text)
      << "</title></rect>\n";
    if (b.marker)
      s << "<line x1=\"" << x_of(*b.marker) << "\" y1=\"" << y + 1 << "\" x2=\"" << x_of(*b.marker) << "\" y2=\""
        << y + row_h - 1 << "\" stroke=\"#222222\" stroke-width=\"2\"/>\n";
    s << "<text x=\"" << std::max(x_of(b.value), x_of(b.marker.value_or(0))) + 6 << "\" y=\"" << y + 15
      << "\" font-size=\"12\">" << html_escape(b.text) << "</text>\n";
  }
  if (reference)
    s << "<line x1=\"" << x_of(*reference) << "\" y1=\"" << top - 4 << "\" x2=\"" << x_of(*reference) << "\" y2=\""
      << axis_y << "\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\n";
  s << "</svg>\n";
  return s.str();
}

// Colours of the phases (shared with scripts/plot_results.py).
std::string phase_color(const std::string& phase) {
  static const std::vector<std::pair<std::string, std::string>> colors = {
      {"attention", "#4e79a7"}, {"gate", "#9c755f"},         {"dispatch", "#f28e2b"},
      {"expert", "#59a14f"},    {"combine", "#edc948"},      {"tp_allreduce", "#e15759"},
      {"pp_transfer", "#b07aa1"}, {"other", "#bab0ac"},      {"idle", "#dddddd"}};
  for (const auto& [name, color] : colors)
    if (name == phase) return color;
  return "#777777";
}

// Stacked horizontal bars: each row's decode step split into its phases (mean over ranks), as a
// share of the row's total so that a CPU run and a simulated cluster are read alike; the total in
// ms on the right.
std::string svg_phase_chart(const std::vector<std::pair<std::string, const CompareRow*>>& rows) {
  size_t longest = 0;
  for (const auto& [label, r] : rows) longest = std::max(longest, label.size());
  const double label_w = std::max(160.0, 6.6 * static_cast<double>(longest) + 16), plot_w = 420, text_w = 110;
  const double row_h = 22, top = 34, legend_h = 26;
  std::vector<std::string> phases;  // legend: every phase with time in some row, in results order
  for (const auto& [label, r] : rows)
    for (const auto& [phase, ms] : r->decode_phase_ms)
      if (ms > 0 && std::find(phases.begin(), phases.end(), phase) == phases.end()) phases.push_back(phase);
  std::stable_sort(phases.begin(), phases.end(),
                   [](const std::string& a, const std::string& b) { return phase_rank(a) < phase_rank(b); });
  const double width = label_w + plot_w + text_w;
  // Legend entries left to right from the plot's left edge, wrapping at the chart's width.
  std::vector<std::pair<double, double>> legend_at;  // x, y offset below the bars
  double lx = label_w, lrow = 0;
  for (const std::string& phase : phases) {
    const double w = 22 + 6.2 * phase.size();
    if (lx + w > width && lx > label_w) lx = label_w, lrow += 1;
    legend_at.emplace_back(lx, lrow * 18);
    lx += w;
  }
  const double height = top + row_h * rows.size() + legend_h + 18 * lrow + 8;
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 "
    << width << " " << height << "\" role=\"img\" aria-label=\"Decode step by phase\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  s << "<text x=\"8\" y=\"20\" font-size=\"15\" font-weight=\"bold\">Decode step by phase (share of the per-rank mean)</text>\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const CompareRow& r = *rows[i].second;
    const double y = top + row_h * i;
    double total = 0;
    for (const auto& [phase, ms] : r.decode_phase_ms) total += std::max(0.0, ms);
    s << "<text x=\"" << label_w - 6 << "\" y=\"" << y + 15 << "\" font-size=\"12\" text-anchor=\"end\">"
      << html_escape(rows[i].first) << "</text>\n";
    double x = label_w;
    for (const auto& [phase, ms] : r.decode_phase_ms) {
      if (!(ms > 0) || !(total > 0)) continue;
      const double w = plot_w * ms / total;
      s << "<rect x=\"" << x << "\" y=\"" << y + 3 << "\" width=\"" << w << "\" height=\"" << row_h - 6 << "\" fill=\""
        << phase_color(phase) << "\"><title>" << html_escape(phase + ": " + format_ms(ms) + " ms") << "</title></rect>\n";
      x += w;
    }
    s << "<text x=\"" << label_w + plot_w + 6 << "\" y=\"" << y + 15 << "\" font-size=\"12\">"
      << html_escape(format_ms(total) + " ms") << "</text>\n";
  }
  for (size_t i = 0; i < phases.size(); ++i) {
    const double x = legend_at[i].first, y = top + row_h * rows.size() + 10 + legend_at[i].second;
    s << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"12\" height=\"12\" fill=\"" << phase_color(phases[i]) << "\"/>"
      << "<text x=\"" << x + 16 << "\" y=\"" << y + 11 << "\" font-size=\"11\">" << html_escape(phases[i]) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string row_label(const CompareRow& r) { return r.config_name + " · " + r.strategy + (r.mode == "simulated" ? " (sim)" : ""); }

std::string mode_color(const CompareRow& r) { return r.mode == "simulated" ? "#e67e22" : "#2c7fb8"; }

std::string charts(const CompareTable& t) {
  std::vector<Bar> decode, tpot, ratio, prediction;
  for (const CompareRow& r : t.rows) {
    decode.push_back({row_label(r), r.decode_tokens_per_s, mode_color(r), std::nullopt, format_rate(r.decode_tokens_per_s)});
    tpot.push_back({row_label(r), r.tpot_mean_ms, mode_color(r), r.tpot_p99_ms,
                    format_ms(r.tpot_mean_ms) + " (p99 " + format_ms(r.tpot_p99_ms) + ")"});
    if (r.decode_tps_ratio)
      ratio.push_back({row_label(r) + " / " + r.baseline, *r.decode_tps_ratio, mode_color(r), std::nullopt,
                       format_ratio(r.decode_tps_ratio)});
    if (r.tpot_prediction_error && r.mode == "measured") {
      prediction.push_back({r.config_name + " · " + r.strategy + " measured", r.tpot_mean_ms, "#2c7fb8", std::nullopt,
                            format_ms(r.tpot_mean_ms) + " ms"});
      const double sim = r.tpot_mean_ms * (1 + *r.tpot_prediction_error);
      prediction.push_back({r.config_name + " · " + r.strategy + " simulated", sim, "#e67e22", std::nullopt,
                            format_ms(sim) + " ms (" + format_percent(r.tpot_prediction_error) + ")"});
    }
  }
  std::string out = svg_bar_chart("Decode throughput", "tokens/s", decode);
  out += svg_bar_chart("TPOT: mean, tick at p99", "ms per decode step", tpot);
  if (!ratio.empty()) out += svg_bar_chart("Decode throughput / baseline", "ratio (dashed line: 1)", ratio, 1.0);
  if (!prediction.empty()) out += svg_bar_chart("Measured vs simulated TPOT", "ms per decode step", prediction);
  std::vector<std::pair<std::string, const CompareRow*>> with_phases;
  for (const CompareRow& r : t.rows)
    if (!r.decode_phase_ms.empty()) with_phases.emplace_back(row_label(r), &r);
  if (!with_phases.empty()) out += svg_phase_chart(with_phases);
  return out;
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string format_compare_html(const CompareTable& t, const std::vector<std::string>& files) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>moe-bench compare</title>\n"
    << "<style>\nbody{font-family:sans-serif;margin:24px;color:#222;background:#fff}\n"
    << "table{border-collapse:collapse;font-size:13px;margin-bottom:16px}\n"
    << "th,td{border:1px solid #ccc;padding:3px 7px;white-space:nowrap}\nth{background:#eef3f8}\n"
    << "td.n{text-align:right;font-variant-numeric:tabular-nums}\ntr.simulated td{background:#fdf2e6}\n"
    << "td.fail{color:#b00;font-weight:bold}\nsvg{display:block;margin:12px 0}\n.legend{font-size:13px;color:#444}\n"
    << ".scroll{overflow-x:auto}\n</style>\n</head>\n<body>\n<h1>moe-bench compare</h1>\n";
  h << "<p class=\"legend\">" << t.rows.size() << " strategies from " << files.size() << " file(s); moe-bench "
    << html_escape(tool_version()) << ", " << html_escape(utc_timestamp())
    << ". Blue: measured, orange: simulated. x: this strategy / the baseline of the same file (decode and "
       "prefill tok/s: &gt; 1 is faster; TPOT: &lt; 1 is faster). Column definitions: "
    << html_escape(kCompareDocs) << ".</p>\n<div class=\"scroll\"><table>\n<tr>";
  const auto& cols = compare_columns();
  for (const auto& c : cols)
    h << "<th><a href=\"" << kCompareDocs << "#" << c.anchor << "\">" << html_escape(c.header) << "</a></th>";
  h << "</tr>\n";
  for (const CompareRow& r : t.rows) {
    h << "<tr class=\"" << html_escape(r.mode) << "\">";
    for (const auto& c : cols) {
      const std::string text = c.text(r);
      const bool fail = c.header == "verify" && r.passed && !*r.passed;
      h << "<td class=\"" << (fail ? "fail" : (c.numeric ? "n" : "")) << "\">" << html_escape(text) << "</td>";
    }
    h << "</tr>\n";
  }
  h << "</table></div>\n";
  for (const std::string& n : t.notes) h << "<p class=\"legend\">Note: " << html_escape(n) << "</p>\n";
  h << charts(t);
  h << "<p class=\"legend\">Files:";
  for (const std::string& f : files) h << " " << html_escape(f);
  h << "</p>\n</body>\n</html>\n";
  return h.str();
}

}  // namespace moe
