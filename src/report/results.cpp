// Assembly of the results document and its console rendering.
#include "report/results.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <sstream>

namespace moe {

std::string tool_version() { return MOE_VERSION; }

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::ordered_json make_results(const RunContext& ctx, const Config& config, const nlohmann::ordered_json& strategies,
                                    const nlohmann::ordered_json& comparison) {
  nlohmann::ordered_json j;
  j["schema_version"] = 1;
  j["status"] = ctx.status;
  if (ctx.status != "ok") j["failure"] = {{"reason", ctx.failure_reason}};
  j["tool"] = {{"name", "moe-bench"}, {"version", tool_version()}, {"git_sha", git_sha()}};
  nlohmann::ordered_json c = {{"mode", ctx.mode}, {"backend", ctx.backend}, {"compute_dtype", ctx.compute_dtype},
                              {"world_size", ctx.world_size}, {"hosts", ctx.hosts}, {"devices", ctx.devices},
                              {"mpi", ctx.mpi}};
  if (!ctx.runtime_json.empty()) {
    const auto rt = nlohmann::ordered_json::parse(ctx.runtime_json);
    c["cuda"] = rt;
    if (rt.contains("nccl")) c["nccl"] = rt["nccl"];
  }
  c["argv"] = ctx.argv;
  nlohmann::ordered_json env = nlohmann::ordered_json::object();
  for (const auto& [k, v] : ctx.environment) env[k] = v;
  c["environment"] = env;
  c["timestamp"] = utc_timestamp();
  if (!ctx.notice.empty()) c["notice"] = ctx.notice;
  j["context"] = c;
  j["config"] = config_to_json(config);
  j["strategies"] = strategies;
  j["comparison"] = comparison;
  return j;
}

nlohmann::ordered_json make_failed_results(const RunContext& ctx, const Config& config,
                                           const nlohmann::ordered_json& completed_strategies,
                                           const nlohmann::ordered_json& comparison) {
  nlohmann::ordered_json j = make_results(ctx, config, completed_strategies, comparison);
  nlohmann::ordered_json names = nlohmann::ordered_json::array();
  for (const auto& s : completed_strategies) names.push_back(s["name"]);
  j["failure"]["completed_strategies"] = names;
  return j;
}

std::vector<std::pair<std::string, std::string>> relevant_environment() {
  std::vector<std::pair<std::string, std::string>> out;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = kv.substr(0, eq);
    const bool wanted = key.rfind("OMPI_", 0) == 0 || key.rfind("NCCL_", 0) == 0 || key.rfind("UCX_", 0) == 0 ||
                        key.rfind("MOE_", 0) == 0 || key == "CUDA_VISIBLE_DEVICES" || key == "OPENBLAS_NUM_THREADS";
    if (wanted) out.emplace_back(key, kv.substr(eq + 1));
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

std::string fmt(double v, int precision = 2) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(precision) << v;
  return os.str();
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  return fmt(b, 1) + " " + units[u];
}

// Prefill / decode overlap efficiency (1 - exposed / communication time), "-" without communication.
std::string overlap_cell(const nlohmann::ordered_json& s) {
  if (!s.contains("overlap")) return "-";
  auto one = [&](const char* step) -> std::string {
    const auto& o = s["overlap"][step];
    return o.is_object() && o["comm_ms"].get<double>() > 0 ? fmt(o["efficiency"].get<double>()) : "-";
  };
  return one("prefill") + "/" + one("decode_step");
}

}  // namespace

std::string scientific(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1e", v);
  return buf;
}

std::string tpot_change_text(double tpot_ratio) {
  if (!(tpot_ratio > 0)) return "n/a";
  return tpot_ratio >= 1 ? fmt(tpot_ratio) + "x lower" : fmt(1 / tpot_ratio) + "x higher";
}

void print_table(std::ostream& out, const nlohmann::ordered_json& r) {
  const auto& ctx = r["context"];
  out << "moe-bench " << r["tool"]["version"].get<std::string>() << "  config " << r["config"]["name"].get<std::string>()
      << "  backend " << ctx["backend"].get<std::string>() << " (" << ctx["compute_dtype"].get<std::string>() << ")  ranks "
      << ctx["world_size"].get<int>() << "  mode " << ctx["mode"].get<std::string>() << "\n\n";
  // Name columns fit the longest strategy name.
  int name_w = 10;
  for (const auto& s : r["strategies"]) name_w = std::max<int>(name_w, static_cast<int>(s["name"].get<std::string>().size()));
  out << std::left << std::setw(name_w + 2) << "strategy" << std::setw(8) << "kind" << std::right << std::setw(14) << "prefill tok/s"
      << std::setw(14) << "decode tok/s" << std::setw(11) << "TPOT mean" << std::setw(10) << "TPOT p50" << std::setw(10)
      << "TPOT p99" << std::setw(13) << "overlap p/d" << std::setw(12) << "max rel err" << std::setw(8) << "verify" << "\n";
  for (const auto& s : r["strategies"]) {
    const auto& v = s["verification"];
    const bool checked = v["checked"].get<bool>();
    out << std::left << std::setw(name_w + 2) << s["name"].get<std::string>() << std::setw(8) << s["kind"].get<std::string>()
        << std::right << std::setw(14) << fmt(s["prefill"]["tokens_per_s"].get<double>(), 0) << std::setw(14)
        << fmt(s["decode"]["tokens_per_s"].get<double>(), 0) << std::setw(8)
        << fmt(s["decode"]["tpot_ms"]["mean"].get<double>()) << " ms" << std::setw(7)
        << fmt(s["decode"]["tpot_ms"]["p50"].get<double>()) << " ms" << std::setw(7)
        << fmt(s["decode"]["tpot_ms"]["p99"].get<double>()) << " ms" << std::setw(13) << overlap_cell(s) << std::setw(12)
        << (checked ? scientific(v["max_rel_error"].get<double>()) : "-") << std::setw(8)
        << (checked ? (v["passed"].get<bool>() ? "PASS" : "FAIL") : "off") << "\n";
  }
  for (const auto& s : r["strategies"]) {  // where each ep strategy's experts live
    const auto& layout = s["layout"];
    if (!layout.contains("placement")) continue;
    out << "  " << std::left << std::setw(name_w) << s["name"].get<std::string>() << std::right << "  placement "
        << layout["placement"].get<std::string>()
        << (layout.contains("plan_file") ? " from plan " + layout["plan_file"].get<std::string>() : std::string()) << "\n";
  }
  out << "\nper decode step, ms (max over ranks / mean over ranks):\n";
  for (const auto& s : r["strategies"]) {
    out << "  " << std::left << std::setw(name_w) << s["name"].get<std::string>() << std::right;
    for (const auto& [phase, t] : s["phases_ms"]["decode_step"].items()) {
      if (t["max"].get<double>() <= 0) continue;
      out << "  " << phase << " " << fmt(t["max"].get<double>(), 3) << "/" << fmt(t["mean"].get<double>(), 3);
    }
    if (s.contains("host_ms")) {   // measured: the host part of each phase
      std::string host;
      for (const auto& [phase, t] : s["host_ms"]["decode_step"].items())
        if (t["max"].get<double>() > 0)
          host += "  " + phase + " " + fmt(t["max"].get<double>(), 3) + "/" + fmt(t["mean"].get<double>(), 3);
      if (!host.empty()) out << "\n  " << std::string(name_w, ' ') << "  of which host:" << host;
    }
    out << "\n";
  }
  out << "\ntraffic per iteration and load:\n";
  for (const auto& s : r["strategies"]) {
    const auto& t = s["traffic"];
    out << "  " << std::left << std::setw(name_w) << s["name"].get<std::string>() << std::right << "  intra-node "
        << human_bytes(t["intra_node_bytes"].get<double>()) << "  inter-node " << human_bytes(t["inter_node_bytes"].get<double>())
        << "  busiest NIC " << human_bytes(t["max_inter_node_link_bytes"].get<double>()) << "  min balancedness "
        << fmt(s["load"]["min_balancedness"].get<double>(), 3)
        << (s["load"].contains("min_gpu_balancedness") && s["load"]["min_gpu_balancedness"].is_number()
                ? " (per GPU " + fmt(s["load"]["min_gpu_balancedness"].get<double>(), 3) + ")"
                : std::string())
        << "  dropped " << s["load"]["dropped_total"].get<int64_t>()
        << "  peak mem/rank " << human_bytes(s["memory"]["peak_allocated_bytes_max"].get<double>()) << "\n";
  }
  if (!r["comparison"].empty()) {
    out << "\n";
    for (const auto& c : r["comparison"])
      out << c["name"].get<std::string>() << " vs " << c["vs"].get<std::string>() << ": decode TPS x"
          << fmt(c["tps_ratio"].get<double>()) << ", TPOT " << tpot_change_text(c["tpot_ratio"].get<double>()) << ", prefill TPS x"
          << fmt(c["prefill_tps_ratio"].get<double>()) << "\n";
  }
}

nlohmann::ordered_json compare_strategies(const nlohmann::ordered_json& strategies) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  if (strategies.size() < 2) return out;
  const auto& base = strategies[0];
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  for (size_t i = 1; i < strategies.size(); ++i) {
    const auto& s = strategies[i];
    out.push_back({{"name", s["name"]}, {"vs", base["name"]},
                   {"tps_ratio", ratio(s["decode"]["tokens_per_s"], base["decode"]["tokens_per_s"])},
                   {"tpot_ratio", ratio(base["decode"]["tpot_ms"]["mean"], s["decode"]["tpot_ms"]["mean"])},
                   {"prefill_tps_ratio", ratio(s["prefill"]["tokens_per_s"], base["prefill"]["tokens_per_s"])}});
  }
  return out;
}

}  // namespace moe
