// Hardware profiles: defaults, JSON form (strict keys, errors name the path) and overrides.
#include "sim/hardware.hpp"

#include <type_traits>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace moe {

double HardwareProfile::tflops(KernelKind k) const {
  const double given = kernels[static_cast<int>(k)].tflops;
  if (given > 0) return given;
  return peak_tflops * (k == KernelKind::attention ? attention_efficiency : gemm_efficiency);
}

double HardwareProfile::gb_s(KernelKind k) const {
  const double given = kernels[static_cast<int>(k)].gb_s;
  if (given > 0) return given;
  if (k == KernelKind::upload || k == KernelKind::download) return 25;  // PCIe Gen5 x16, pageable copies
  return hbm_gb_s * hbm_efficiency;
}

double HardwareProfile::ns_per_item(KernelKind k) const {
  const double given = kernels[static_cast<int>(k)].ns_per_item;
  if (given > 0) return given;
  // Host softmax (float64 exp) + top-k per logit, and plan building per assignment, on one core.
  return k == KernelKind::host_route ? 4.0 : 15.0;
}

double HardwareProfile::gemm_table_ms(double m, int64_t k, int64_t n) const {
  std::vector<std::pair<double, double>> pts;  // (m, ms) for this shape, ascending m
  for (const auto& e : gemm_table)
    if (int64_t(e[1]) == k && int64_t(e[2]) == n) pts.push_back({e[0], e[3]});
  if (pts.empty() || m <= 0) return pts.empty() ? -1.0 : 0.0;
  std::sort(pts.begin(), pts.end());
  if (m <= pts.front().first) return pts.front().second;
  if (m >= pts.back().first) return pts.back().second * m / pts.back().first;  // FLOP-bound growth
  for (size_t i = 1; i < pts.size(); ++i)
    if (m <= pts[i].first) {
      const auto [m0, t0] = pts[i - 1];
      const auto [m1, t1] = pts[i];
      const double x = std::log(m / m0) / std::log(m1 / m0);
      return std::exp(std::log(t0) + x * (std::log(t1) - std::log(t0)));
    }
  return pts.back().second;
}

HardwareProfile default_profile(const ClusterConfig& c) {
  HardwareProfile p;
  p.name = "h100-sxm-ndr (built-in) with the config's cluster peaks";
  p.gpu_name = c.gpu.name;
  p.memory_gb = c.gpu.memory_gb;
  p.peak_tflops = c.gpu.peak_tflops;
  p.hbm_gb_s = c.gpu.hbm_gb_s;
  p.intra_node.bandwidth_gb_s = c.intra_node.bandwidth_gb_s;
  p.intra_node.latency_us = c.intra_node.latency_us;
  p.inter_node.bandwidth_gb_s = c.inter_node.bandwidth_gb_s;
  p.inter_node.latency_us = c.inter_node.latency_us;
  p.nics_per_node = c.inter_node.nics_per_node;
  p.sources = {{"efficiencies", "docs/simulator.md (hardware profile)"}};
  return p;
}

namespace {

using ojson = nlohmann::ordered_json;

// Reads keys of one JSON object, rejecting unknown ones.
class Reader {
 public:
  Reader(const nlohmann::json& j, std::string path, std::vector<std::string> known) : j_(j), path_(std::move(path)) {
    if (!j.is_object()) throw ConfigError(path_, "must be an object with keys " + list(known) + ", got " + j.type_name());
    for (const auto& [k, v] : j.items()) {
      bool ok = false;
      for (const auto& n : known) ok = ok || n == k;
      if (!ok) throw ConfigError(sub(k), "unknown key (" + (path_.empty() ? std::string("top level") : path_) + " has " + list(known) + ")");
    }
  }
  std::string sub(const std::string& k) const { return path_.empty() ? k : path_ + "." + k; }
  template <class T>
  void read(const std::string& k, T& out) const {
    if (!j_.contains(k)) return;
    try {
      out = j_.at(k).get<T>();
    } catch (const std::exception&) {
      throw ConfigError(sub(k), std::string("must be ") + expected<T>() + ", got " + j_.at(k).type_name() + " " + j_.at(k).dump());
    }
  }
  template <class T>
  static const char* expected() {
    if (std::is_same<T, bool>::value) return "a boolean";
    if (std::is_arithmetic<T>::value) return "a number";
    if (std::is_same<T, std::string>::value) return "a string";
    return "another type";
  }
  static std::string list(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }
  void positive(const std::string& k, double& out) const {
    read(k, out);
    if (j_.contains(k) && !(out > 0)) throw ConfigError(sub(k), "must be positive");
  }
  void fraction(const std::string& k, double& out) const {
    read(k, out);
    if (j_.contains(k) && !(out > 0 && out <= 1)) throw ConfigError(sub(k), "must be in (0, 1]");
  }
  bool has(const std::string& k) const { return j_.contains(k); }
  const nlohmann::json& at(const std::string& k) const { return j_.at(k); }

 private:
  const nlohmann::json& j_;
  std::string path_;
};

void read_link(const Reader& parent, const std::string& key, LinkProfile& l, int* nics) {
  if (!parent.has(key)) return;
  std::vector<std::string> known = {"bandwidth_gb_s", "efficiency", "latency_us"};
  if (nics) known.push_back("nics_per_node");
  Reader r(parent.at(key), parent.sub(key), known);
  r.positive("bandwidth_gb_s", l.bandwidth_gb_s);
  r.fraction("efficiency", l.efficiency);
  r.positive("latency_us", l.latency_us);
  if (nics) {
    r.read("nics_per_node", *nics);
    if (*nics < 1) throw ConfigError(r.sub("nics_per_node"), "must be at least 1");
  }
}

ojson link_json(const LinkProfile& l) {
  return {{"bandwidth_gb_s", l.bandwidth_gb_s}, {"efficiency", l.efficiency}, {"latency_us", l.latency_us}};
}

}  // namespace

HardwareProfile parse_profile(const nlohmann::json& j, const HardwareProfile& base, const std::string& source) {
  HardwareProfile p = base;
  try {
    Reader r(j, "", {"name", "description", "sources", "gpu", "intra_node", "inter_node", "collectives", "streams", "kernels",
                       "gemm_table"});
    r.read("name", p.name);
    r.read("description", p.description);
    if (r.has("sources")) p.sources = r.at("sources");
    if (r.has("gpu")) {
      Reader g(r.at("gpu"), "gpu", {"name", "memory_gb", "peak_tflops", "hbm_gb_s", "gemm_efficiency", "attention_efficiency",
                                    "hbm_efficiency", "kernel_overhead_us", "host_sync_us"});
      g.read("name", p.gpu_name);
      g.positive("memory_gb", p.memory_gb);
      g.positive("peak_tflops", p.peak_tflops);
      g.positive("hbm_gb_s", p.hbm_gb_s);
      g.fraction("gemm_efficiency", p.gemm_efficiency);
      g.fraction("attention_efficiency", p.attention_efficiency);
      g.fraction("hbm_efficiency", p.hbm_efficiency);
      g.read("kernel_overhead_us", p.kernel_overhead_us);
      g.read("host_sync_us", p.host_sync_us);
      if (p.kernel_overhead_us < 0 || p.host_sync_us < 0) throw ConfigError("gpu", "overheads must be non-negative");
    }
    read_link(r, "intra_node", p.intra_node, nullptr);
    read_link(r, "inter_node", p.inter_node, &p.nics_per_node);
    if (r.has("collectives")) {
      Reader c(r.at("collectives"), "collectives", {"hop_latency_us", "alltoall_per_peer_us", "allreduce_gb_s"});
      c.read("hop_latency_us", p.collective_hop_us);
      c.read("alltoall_per_peer_us", p.alltoall_per_peer_us);
      c.positive("allreduce_gb_s", p.allreduce_gb_s);
      if (p.collective_hop_us < 0 || p.alltoall_per_peer_us < 0) throw ConfigError("collectives", "latencies must be non-negative");
    }
    if (r.has("streams")) {
      Reader s(r.at("streams"), "streams", {"overlap", "shared_cores"});
      // "overlap" is accepted and ignored: what overlaps is the strategy's overlap mode (its schedule).
      bool ignored = false;
      s.read("overlap", ignored);
      s.read("shared_cores", p.shared_cores);
      if (p.shared_cores < 0) throw ConfigError("streams.shared_cores", "must be non-negative");
    }
    if (r.has("kernels")) {
      std::vector<std::string> names;
      for (int k = 0; k < kNumKernelKinds; ++k) names.push_back(kernel_kind_name(static_cast<KernelKind>(k)));
      Reader ks(r.at("kernels"), "kernels", names);
      for (int k = 0; k < kNumKernelKinds; ++k) {
        const std::string n = names[k];
        if (!ks.has(n)) continue;
        Reader kr(ks.at(n), ks.sub(n), {"tflops", "gb_s", "ns_per_item"});
        kr.positive("tflops", p.kernels[k].tflops);
        kr.positive("gb_s", p.kernels[k].gb_s);
        kr.positive("ns_per_item", p.kernels[k].ns_per_item);
      }
    }
    if (r.has("gemm_table")) {
      try {
        p.gemm_table = r.at("gemm_table").get<std::vector<std::array<double, 4>>>();
      } catch (const std::exception&) {
        throw ConfigError("gemm_table", "must be an array of [m, k, n, ms]");
      }
      for (const auto& e : p.gemm_table)
        if (!(e[0] > 0 && e[1] > 0 && e[2] > 0 && e[3] > 0)) throw ConfigError("gemm_table", "entries must be positive");
    }
  } catch (const ConfigError& e) {
    // --set names its key once: "--set gpu.bogus: unknown key ..." (the path is the key).
    const bool same = !e.path().empty() && source == "--set " + e.path();
    throw ConfigError(same || e.path().empty() ? source : source + ": " + e.path(), e.reason());
  }
  return p;
}

HardwareProfile load_profile_file(const std::string& path, const HardwareProfile& base) {
  std::ifstream in(path);
  if (!in) throw ConfigError("--hardware", "cannot open hardware profile '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const std::exception& e) {
    throw ConfigError(path, std::string("not valid JSON: ") + e.what());
  }
  return parse_profile(j, base, path);
}

ojson profile_to_json(const HardwareProfile& p) {
  ojson j;
  j["name"] = p.name;
  if (!p.description.empty()) j["description"] = p.description;
  j["gpu"] = {{"name", p.gpu_name}, {"memory_gb", p.memory_gb}, {"peak_tflops", p.peak_tflops}, {"hbm_gb_s", p.hbm_gb_s},
              {"gemm_efficiency", p.gemm_efficiency}, {"attention_efficiency", p.attention_efficiency},
              {"hbm_efficiency", p.hbm_efficiency}, {"kernel_overhead_us", p.kernel_overhead_us},
              {"host_sync_us", p.host_sync_us}};
  j["intra_node"] = link_json(p.intra_node);
  j["inter_node"] = link_json(p.inter_node);
  j["inter_node"]["nics_per_node"] = p.nics_per_node;
  j["collectives"] = {{"hop_latency_us", p.collective_hop_us}, {"alltoall_per_peer_us", p.alltoall_per_peer_us}};
  if (p.allreduce_gb_s > 0) j["collectives"]["allreduce_gb_s"] = p.allreduce_gb_s;
  if (p.shared_cores > 0) j["streams"] = {{"shared_cores", p.shared_cores}};
  ojson ks = ojson::object();
  for (int k = 0; k < kNumKernelKinds; ++k) {
    const KernelRate& r = p.kernels[k];
    ojson o = ojson::object();
    if (r.tflops > 0) o["tflops"] = r.tflops;
    if (r.gb_s > 0) o["gb_s"] = r.gb_s;
    if (r.ns_per_item > 0) o["ns_per_item"] = r.ns_per_item;
    if (!o.empty()) ks[kernel_kind_name(static_cast<KernelKind>(k))] = o;
  }
  j["kernels"] = ks;
  if (!p.gemm_table.empty()) j["gemm_table"] = p.gemm_table;
  if (!p.sources.empty()) j["sources"] = p.sources;
  return j;
}

void apply_profile_override(HardwareProfile& p, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw ConfigError("--set", "expected key=value, got '" + assignment + "'");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text);
  } catch (const std::exception&) {
    value = text;  // a bare string
  }
  nlohmann::json patch = value;
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) patch = nlohmann::json{{*it, patch}};
  p = parse_profile(patch, p, "--set " + key);
}

void apply_profile_to_cluster(const HardwareProfile& p, ClusterConfig& c) {
  c.gpu.name = p.gpu_name;
  c.gpu.memory_gb = p.memory_gb;
  c.gpu.peak_tflops = p.peak_tflops;
  c.gpu.hbm_gb_s = p.hbm_gb_s;
  c.intra_node.bandwidth_gb_s = p.intra_node.bandwidth_gb_s;
  c.intra_node.latency_us = p.intra_node.latency_us;
  c.inter_node.bandwidth_gb_s = p.inter_node.bandwidth_gb_s;
  c.inter_node.latency_us = p.inter_node.latency_us;
  c.inter_node.nics_per_node = p.nics_per_node;
}

}  // namespace moe
