// Config parsing (types, unknown keys, defaults), serialization with defaults filled in, and
// validation that holds for any world size (runner/run_validation.hpp checks a run's world size and
// memory).
// Every error is a ConfigError whose path is the JSON path of the offending key.
#include "core/config.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/routing_distribution.hpp"

namespace moe {
namespace {

using json = nlohmann::json;

const std::vector<std::string> kDtypes = {"fp32", "fp16", "bf16"};
const std::vector<std::string> kBackends = {"auto", "cpu", "cuda"};
const std::vector<std::string> kPolicies = {"none", "paper"};

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string sub(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

std::string show(const json& v) { return v.dump(); }

void check_one_of(const std::string& path, const std::string& value, const std::vector<std::string>& allowed) {
  for (const auto& a : allowed)
    if (a == value) return;
  throw ConfigError(path, "must be one of " + join(allowed, " | ") + ", got '" + value + "'");
}

// workload.routing: the gate, a synthetic distribution (core/routing_distribution.hpp) that overrides the
// gate's choice, or "trace:PATH[#strategy]" replaying the choices recorded in a results file.
void check_routing(const std::string& path, const std::string& value) {
  if (value == "gate") return;
  if (value.rfind("trace:", 0) == 0) {
    const std::string rest = value.substr(6);
    if (rest.empty() || rest[0] == '#')
      throw ConfigError(path, "'" + value + "' needs a results file: trace:PATH or trace:PATH#strategy");
    return;
  }
  if (is_routing_distribution(value)) return;
  if (value.find(':') != std::string::npos || value == "uniform") parse_routing_distribution(value, path);  // names the fault
  throw ConfigError(path, "unsupported routing '" + value +
                              "' (gate | uniform | zipf:s | hot:f, optionally ,local:p and ,drift:n | trace:PATH[#strategy])");
}

// One JSON object at `path`: rejects unknown keys up front, then reads typed fields.
class ObjectReader {
 public:
  // `misplaced` maps keys that are valid elsewhere (e.g. another strategy kind) to an explanation.
  ObjectReader(const json& j, std::string path, const std::vector<std::string>& allowed,
               const std::map<std::string, std::string>& misplaced = {})
      : j_(j), path_(std::move(path)) {
    if (!j_.is_object())
      throw ConfigError(path_, "must be an object, got " + type_name(j_) + " " + show(j_));
    const std::set<std::string> ok(allowed.begin(), allowed.end());
    for (const auto& item : j_.items()) {
      if (ok.count(item.key())) continue;
      auto it = misplaced.find(item.key());
      if (it != misplaced.end()) throw ConfigError(at(item.key()), it->second);
      throw ConfigError(at(item.key()), "unknown key '" + item.key() + "' (allowed keys: " + join(allowed, ", ") + ")");
    }
  }

  std::string at(const std::string& key) const { return sub(path_, key); }

  // The value at `key`, or nullptr when absent and optional.
  const json* get(const std::string& key, bool required) const {
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (required) throw ConfigError(at(key), "is required but missing");
      return nullptr;
    }
    return &*it;
  }

  void read(const std::string& key, int& out, bool required = false) const {
    const json* v = get(key, required);
    if (!v) return;
    if (!v->is_number_integer())
      throw ConfigError(at(key), "must be an integer, got " + type_name(*v) + " " + show(*v));
    const bool in_range = v->is_number_unsigned()
                              ? v->get<uint64_t>() <= static_cast<uint64_t>(INT_MAX)
                              : v->get<int64_t>() >= INT_MIN && v->get<int64_t>() <= INT_MAX;
    if (!in_range)
      throw ConfigError(at(key), "is out of the integer range, got " + show(*v));
    out = v->get<int>();
  }

  void read(const std::string& key, uint64_t& out, bool required = false) const {
    const json* v = get(key, required);
    if (!v) return;
    if (!v->is_number_unsigned())
      throw ConfigError(at(key), "must be a non-negative integer (uint64), got " + show(*v));
    out = v->get<uint64_t>();
  }

  void read(const std::string& key, double& out, bool required = false) const {
    const json* v = get(key, required);
    if (!v) return;
    if (!v->is_number()) throw ConfigError(at(key), "must be a number, got " + type_name(*v) + " " + show(*v));
    out = v->get<double>();
  }

  void read(const std::string& key, bool& out, bool required = false) const {
    const json* v = get(key, required);
    if (!v) return;
    if (!v->is_boolean()) throw ConfigError(at(key), "must be true or false, got " + show(*v));
    out = v->get<bool>();
  }

  void read(const std::string& key, std::string& out, bool required = false) const {
    const json* v = get(key, required);
    if (!v) return;
    if (!v->is_string()) throw ConfigError(at(key), "must be a string, got " + type_name(*v) + " " + show(*v));
    out = v->get<std::string>();
  }

 private:
  const json& j_;
  std::string path_;
};

ModelConfig parse_model(const json& j, const std::string& path) {
  ObjectReader r(j, path, {"layers", "hidden", "ffn_hidden", "experts", "top_k", "heads", "head_dim", "attention",
                           "renormalize", "dtype", "seed"});
  ModelConfig m;
  r.read("attention", m.attention);
  r.read("layers", m.layers, true);
  r.read("hidden", m.hidden, true);
  r.read("ffn_hidden", m.ffn_hidden, true);
  r.read("experts", m.experts, true);
  r.read("top_k", m.top_k);
  r.read("heads", m.heads, m.attention);  // MoE-only layers need no attention shape
  r.read("head_dim", m.head_dim, m.attention);
  r.read("renormalize", m.renormalize);
  r.read("dtype", m.dtype);
  check_one_of(r.at("dtype"), m.dtype, kDtypes);
  r.read("seed", m.seed);
  return m;
}

WorkloadConfig parse_workload(const json& j, const std::string& path) {
  ObjectReader r(j, path, {"batch_sequences", "prompt_tokens", "decode_steps", "warmup_steps", "routing"});
  WorkloadConfig w;
  r.read("batch_sequences", w.batch_sequences, true);
  r.read("prompt_tokens", w.prompt_tokens, true);
  r.read("decode_steps", w.decode_steps, true);
  r.read("warmup_steps", w.warmup_steps);
  r.read("routing", w.routing);
  check_routing(r.at("routing"), w.routing);
  return w;
}

LinkSpec parse_link(const json& j, const std::string& path, LinkSpec l, bool inter_node) {
  std::vector<std::string> keys = {"bandwidth_gb_s", "latency_us"};
  std::map<std::string, std::string> misplaced;
  if (inter_node)
    keys.push_back("nics_per_node");
  else
    misplaced["nics_per_node"] = "applies only to cluster.inter_node";
  ObjectReader r(j, path, keys, misplaced);
  r.read("bandwidth_gb_s", l.bandwidth_gb_s);
  r.read("latency_us", l.latency_us);
  if (inter_node) r.read("nics_per_node", l.nics_per_node);
  return l;
}

ClusterConfig parse_cluster(const json& j, const std::string& path) {
  ObjectReader r(j, path, {"nodes", "gpus_per_node", "gpu", "intra_node", "inter_node"});
  ClusterConfig c;
  r.read("nodes", c.nodes, true);
  r.read("gpus_per_node", c.gpus_per_node, true);
  if (const json* g = r.get("gpu", false)) {
    ObjectReader gr(*g, r.at("gpu"), {"name", "memory_gb", "peak_tflops", "hbm_gb_s"});
    gr.read("name", c.gpu.name);
    gr.read("memory_gb", c.gpu.memory_gb);
    gr.read("peak_tflops", c.gpu.peak_tflops);
    gr.read("hbm_gb_s", c.gpu.hbm_gb_s);
  }
  if (const json* l = r.get("intra_node", false)) c.intra_node = parse_link(*l, r.at("intra_node"), c.intra_node, false);
  if (const json* l = r.get("inter_node", false)) c.inter_node = parse_link(*l, r.at("inter_node"), c.inter_node, true);
  return c;
}

LoadBalancingConfig parse_load_balancing(const json& j, const std::string& path) {
  ObjectReader r(j, path, {"policy", "threshold", "step", "update_interval_tokens", "capacity_factor"});
  LoadBalancingConfig lb;
  r.read("policy", lb.policy);
  check_one_of(r.at("policy"), lb.policy, kPolicies);
  r.read("threshold", lb.threshold);
  r.read("step", lb.step);
  r.read("update_interval_tokens", lb.update_interval_tokens);
  r.read("capacity_factor", lb.capacity_factor);
  return lb;
}

// The keys of one kind (strategy_kinds()): read into `s`.
void read_kind_keys(const ObjectReader& r, StrategyKind kind, StrategyConfig& s) {
  switch (kind) {
    case StrategyKind::tp_pp:
      r.read("tp", s.tp);
      r.read("pp", s.pp);
      r.read("microbatches", s.microbatches);
      return;
    case StrategyKind::ep:
      r.read("ep", s.ep);
      r.read("expert_tp", s.expert_tp);
      r.read("chunks", s.chunks);
      r.read("immediate_routing", s.immediate_routing);
      r.read("placement", s.placement);
      r.read("placement_profile", s.placement_profile);
      if (!s.placement_profile.empty()) parse_routing_distribution(s.placement_profile, r.at("placement_profile"));
      return;
  }
}

StrategyConfig parse_strategy(const json& j, const std::string& path) {
  if (!j.is_object()) throw ConfigError(path, "must be an object, got " + type_name(j) + " " + show(j));
  StrategyConfig s;
  {
    // The kind decides which keys are allowed, so read it before checking the others.
    auto it = j.find("kind");
    if (it == j.end())
      throw ConfigError(sub(path, "kind"), "is required but missing (" + join(strategy_kind_names(), " | ") + ")");
    if (!it->is_string())
      throw ConfigError(sub(path, "kind"), "must be a string, got " + type_name(*it) + " " + show(*it));
    s.kind = it->get<std::string>();
    check_one_of(sub(path, "kind"), s.kind, strategy_kind_names());
  }
  const StrategyKindInfo& info = strategy_kind_info(s.kind, sub(path, "kind"));
  std::vector<std::string> keys = {"name", "kind", "overlap", "load_balancing"};
  keys.insert(keys.end(), info.keys.begin(), info.keys.end());
  std::map<std::string, std::string> misplaced;
  for (const StrategyKindInfo& other : strategy_kinds())
    for (const auto& k : other.keys)
      if (std::find(info.keys.begin(), info.keys.end(), k) == info.keys.end() && !misplaced.count(k))
        misplaced[k] = "'" + k + "' applies only to strategies of kind '" + other.name + "', this one is '" + s.kind + "'";
  ObjectReader r(j, path, keys, misplaced);
  r.read("name", s.name, true);
  read_kind_keys(r, info.kind, s);
  r.read("overlap", s.overlap);
  if (const json* lb = r.get("load_balancing", false)) s.load_balancing = parse_load_balancing(*lb, r.at("load_balancing"));
  return s;
}

RunConfig parse_run(const json& j, const std::string& path) {
  ObjectReader r(j, path, {"backend", "iterations", "verify", "timeout_s", "emulate_dtype"});
  RunConfig run;
  r.read("backend", run.backend);
  check_one_of(r.at("backend"), run.backend, kBackends);
  r.read("iterations", run.iterations);
  r.read("verify", run.verify);
  r.read("timeout_s", run.timeout_s);
  r.read("emulate_dtype", run.emulate_dtype);
  return run;
}

// ---- validation helpers ----

void require_positive(const std::string& path, int v) {
  if (v <= 0) throw ConfigError(path, "must be a positive integer, got " + std::to_string(v));
}
void require_non_negative(const std::string& path, int v) {
  if (v < 0) throw ConfigError(path, "must be a non-negative integer, got " + std::to_string(v));
}
std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
void require_positive(const std::string& path, double v) {
  if (!(v > 0)) throw ConfigError(path, "must be positive, got " + num(v));
}

void validate_load_balancing(const LoadBalancingConfig& lb, const std::string& path) {
  check_one_of(sub(path, "policy"), lb.policy, kPolicies);
  if (!(lb.threshold > 1)) throw ConfigError(sub(path, "threshold"), "must be greater than 1, got " + num(lb.threshold));
  if (!(lb.step > 0 && lb.step < 1))
    throw ConfigError(sub(path, "step"), "must be in the open interval (0, 1), got " + num(lb.step));
  require_positive(sub(path, "update_interval_tokens"), lb.update_interval_tokens);
  if (!(lb.capacity_factor >= 0))
    throw ConfigError(sub(path, "capacity_factor"), "must be >= 0 (0 = dropless), got " + num(lb.capacity_factor));
}

std::string cluster_text(const Config& c) {
  const int64_t world = static_cast<int64_t>(c.cluster.nodes) * c.cluster.gpus_per_node;
  return "the cluster has " + std::to_string(c.cluster.nodes) + " nodes x " + std::to_string(c.cluster.gpus_per_node) +
         " gpus = " + std::to_string(world);
}

void validate_tp_pp(const Config& c, const StrategyConfig& s, const std::string& path) {
  const int64_t world = static_cast<int64_t>(c.cluster.nodes) * c.cluster.gpus_per_node;
  require_positive(sub(path, "tp"), s.tp);
  require_positive(sub(path, "pp"), s.pp);
  require_positive(sub(path, "microbatches"), s.microbatches);
  if (static_cast<int64_t>(s.tp) * s.pp != world)
    throw ConfigError(sub(path, "tp"), "tp*pp = " + std::to_string(s.tp) + "*" + std::to_string(s.pp) + " = " +
                                           std::to_string(static_cast<int64_t>(s.tp) * s.pp) + " but " + cluster_text(c));
  if (c.model.layers % s.pp != 0)
    throw ConfigError(sub(path, "pp"), "model.layers = " + std::to_string(c.model.layers) +
                                           " is not divisible by pp = " + std::to_string(s.pp));
  if (c.model.attention && c.model.heads % s.tp != 0)
    throw ConfigError(sub(path, "tp"), "model.heads = " + std::to_string(c.model.heads) +
                                           " is not divisible by tp = " + std::to_string(s.tp));
  // Each expert's W1 columns / W2 rows are split evenly over the tp ranks.
  if (c.model.ffn_hidden % s.tp != 0)
    throw ConfigError(sub(path, "tp"), "model.ffn_hidden = " + std::to_string(c.model.ffn_hidden) +
                                           " is not divisible by tp = " + std::to_string(s.tp));
  if (c.workload.batch_sequences % s.microbatches != 0)
    throw ConfigError(sub(path, "microbatches"), "workload.batch_sequences = " + std::to_string(c.workload.batch_sequences) +
                                                     " is not divisible by microbatches = " + std::to_string(s.microbatches));
}

void validate_ep(const Config& c, const StrategyConfig& s, const std::string& path) {
  const int64_t world = static_cast<int64_t>(c.cluster.nodes) * c.cluster.gpus_per_node;
  require_positive(sub(path, "ep"), s.ep);
  require_positive(sub(path, "expert_tp"), s.expert_tp);
  require_positive(sub(path, "chunks"), s.chunks);
  check_one_of(sub(path, "placement"), s.placement, placer_names());
  if (!s.placement_profile.empty()) parse_routing_distribution(s.placement_profile, sub(path, "placement_profile"));
  const int64_t ranks = static_cast<int64_t>(s.ep) * s.expert_tp;
  if (ranks != world)
    throw ConfigError(sub(path, "ep"), "ep*expert_tp = " + std::to_string(s.ep) + "*" + std::to_string(s.expert_tp) +
                                           " = " + std::to_string(ranks) + " but " + cluster_text(c));
  if (s.expert_tp > 1) {
    // An expert's group of expert_tp ranks stays inside one node: its dispatch copies and partial
    // results never share a NIC with another member's.
    if (c.cluster.gpus_per_node % s.expert_tp != 0)
      throw ConfigError(sub(path, "expert_tp"), "expert_tp = " + std::to_string(s.expert_tp) +
                                                    " does not divide cluster.gpus_per_node = " +
                                                    std::to_string(c.cluster.gpus_per_node) +
                                                    " (each expert's group of ranks stays in one node)");
    if (c.model.ffn_hidden % s.expert_tp != 0)
      throw ConfigError(sub(path, "expert_tp"), "model.ffn_hidden = " + std::to_string(c.model.ffn_hidden) +
                                                    " is not divisible by expert_tp = " + std::to_string(s.expert_tp));
  }
  if (c.workload.batch_sequences % ranks != 0)
    throw ConfigError(sub(path, "ep"), "workload.batch_sequences = " + std::to_string(c.workload.batch_sequences) +
                                           " is not divisible by " +
                                           (s.expert_tp == 1 ? "ep = " : "ep*expert_tp = ") + std::to_string(ranks) +
                                           " (each rank owns an equal contiguous block of sequences)");
}

void validate_strategy(const Config& c, const StrategyConfig& s, const std::string& path) {
  check_one_of(sub(path, "kind"), s.kind, strategy_kind_names());
  const StrategyKindInfo& info = strategy_kind_info(s.kind, sub(path, "kind"));
  check_one_of(sub(path, "overlap"), s.overlap, info.overlap_modes);
  switch (info.kind) {
    case StrategyKind::tp_pp: validate_tp_pp(c, s, path); break;
    case StrategyKind::ep: validate_ep(c, s, path); break;
  }
  validate_load_balancing(s.load_balancing, sub(path, "load_balancing"));
}

nlohmann::ordered_json link_to_json(const LinkSpec& l, bool inter_node) {
  nlohmann::ordered_json o;
  o["bandwidth_gb_s"] = l.bandwidth_gb_s;
  o["latency_us"] = l.latency_us;
  if (inter_node) o["nics_per_node"] = l.nics_per_node;
  return o;
}

}  // namespace

Config parse_config(const json& j) {
  if (!j.is_object()) throw ConfigError("", "the config must be a JSON object, got " + type_name(j));
  ObjectReader r(j, "", {"name", "model", "workload", "cluster", "strategies", "run"});
  Config c;
  r.read("name", c.name, true);
  c.model = parse_model(*r.get("model", true), "model");
  c.workload = parse_workload(*r.get("workload", true), "workload");
  c.cluster = parse_cluster(*r.get("cluster", true), "cluster");
  const json& strategies = *r.get("strategies", true);
  if (!strategies.is_array() || strategies.empty())
    throw ConfigError("strategies", "must be a non-empty array of strategies, got " + show(strategies));
  for (size_t i = 0; i < strategies.size(); ++i)
    c.strategies.push_back(parse_strategy(strategies[i], "strategies[" + std::to_string(i) + "]"));
  if (const json* run = r.get("run", false)) c.run = parse_run(*run, "run");
  return c;
}

Config parse_config_text(const std::string& text, const std::string& source_name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number such as 1e999
    throw ConfigError("", "invalid JSON in '" + source_name + "': " + e.what());
  }
  return parse_config(j);
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("", "cannot open config file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config_text(ss.str(), path);
}

nlohmann::ordered_json config_to_json(const Config& c) {
  using ojson = nlohmann::ordered_json;
  ojson o;
  o["name"] = c.name;
  const ModelConfig& m = c.model;
  o["model"] = ojson{{"layers", m.layers},     {"hidden", m.hidden},   {"ffn_hidden", m.ffn_hidden},
                     {"experts", m.experts},   {"top_k", m.top_k},     {"heads", m.heads},
                     {"head_dim", m.head_dim}, {"attention", m.attention}, {"renormalize", m.renormalize},
                     {"dtype", m.dtype},       {"seed", m.seed}};
  const WorkloadConfig& w = c.workload;
  o["workload"] = ojson{{"batch_sequences", w.batch_sequences}, {"prompt_tokens", w.prompt_tokens},
                        {"decode_steps", w.decode_steps},       {"warmup_steps", w.warmup_steps},
                        {"routing", w.routing}};
  const ClusterConfig& cl = c.cluster;
  ojson cluster;
  cluster["nodes"] = cl.nodes;
  cluster["gpus_per_node"] = cl.gpus_per_node;
  cluster["gpu"] = ojson{{"name", cl.gpu.name}, {"memory_gb", cl.gpu.memory_gb},
                         {"peak_tflops", cl.gpu.peak_tflops}, {"hbm_gb_s", cl.gpu.hbm_gb_s}};
  cluster["intra_node"] = link_to_json(cl.intra_node, false);
  cluster["inter_node"] = link_to_json(cl.inter_node, true);
  o["cluster"] = cluster;
  ojson strategies = ojson::array();
  for (const StrategyConfig& s : c.strategies) {
    ojson so;
    so["name"] = s.name;
    so["kind"] = s.kind;
    switch (kind_of(s)) {
      case StrategyKind::tp_pp:
        so["tp"] = s.tp;
        so["pp"] = s.pp;
        so["microbatches"] = s.microbatches;
        so["overlap"] = s.overlap;
        break;
      case StrategyKind::ep:
        so["ep"] = s.ep;
        so["expert_tp"] = s.expert_tp;
        so["chunks"] = s.chunks;
        so["overlap"] = s.overlap;
        so["immediate_routing"] = s.immediate_routing;
        so["placement"] = s.placement;
        if (!s.placement_profile.empty()) so["placement_profile"] = s.placement_profile;
        break;
    }
    const LoadBalancingConfig& lb = s.load_balancing;
    so["load_balancing"] = ojson{{"policy", lb.policy},
                                 {"threshold", lb.threshold},
                                 {"step", lb.step},
                                 {"update_interval_tokens", lb.update_interval_tokens},
                                 {"capacity_factor", lb.capacity_factor}};
    strategies.push_back(so);
  }
  o["strategies"] = strategies;
  o["run"] = ojson{{"backend", c.run.backend}, {"iterations", c.run.iterations}, {"verify", c.run.verify},
                   {"timeout_s", c.run.timeout_s}, {"emulate_dtype", c.run.emulate_dtype}};
  return o;
}

void validate_config(const Config& c) {
  if (c.name.empty()) throw ConfigError("name", "must be a non-empty string");

  const ModelConfig& m = c.model;
  require_positive("model.layers", m.layers);
  require_positive("model.hidden", m.hidden);
  require_positive("model.ffn_hidden", m.ffn_hidden);
  require_positive("model.experts", m.experts);
  if (m.top_k < 1 || m.top_k > m.experts)
    throw ConfigError("model.top_k", "must be in [1, model.experts = " + std::to_string(m.experts) + "], got " +
                                         std::to_string(m.top_k));
  if (m.attention) {
    require_positive("model.heads", m.heads);
    require_positive("model.head_dim", m.head_dim);
  }
  check_one_of("model.dtype", m.dtype, kDtypes);

  const WorkloadConfig& w = c.workload;
  require_positive("workload.batch_sequences", w.batch_sequences);
  require_positive("workload.prompt_tokens", w.prompt_tokens);
  require_non_negative("workload.decode_steps", w.decode_steps);
  require_non_negative("workload.warmup_steps", w.warmup_steps);
  check_routing("workload.routing", w.routing);

  const ClusterConfig& cl = c.cluster;
  require_positive("cluster.nodes", cl.nodes);
  require_positive("cluster.gpus_per_node", cl.gpus_per_node);
  require_positive("cluster.gpu.memory_gb", cl.gpu.memory_gb);
  require_positive("cluster.gpu.peak_tflops", cl.gpu.peak_tflops);
  require_positive("cluster.gpu.hbm_gb_s", cl.gpu.hbm_gb_s);
  require_positive("cluster.intra_node.bandwidth_gb_s", cl.intra_node.bandwidth_gb_s);
  require_positive("cluster.intra_node.latency_us", cl.intra_node.latency_us);
  require_positive("cluster.inter_node.bandwidth_gb_s", cl.inter_node.bandwidth_gb_s);
  require_positive("cluster.inter_node.latency_us", cl.inter_node.latency_us);
  require_positive("cluster.inter_node.nics_per_node", cl.inter_node.nics_per_node);

  if (c.strategies.empty()) throw ConfigError("strategies", "must be a non-empty array of strategies");
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < c.strategies.size(); ++i) {
    const std::string path = "strategies[" + std::to_string(i) + "]";
    const StrategyConfig& s = c.strategies[i];
    if (s.name.empty()) throw ConfigError(path + ".name", "must be a non-empty string");
    auto [it, inserted] = seen.emplace(s.name, i);
    if (!inserted)
      throw ConfigError(path + ".name", "duplicate strategy name '" + s.name + "' (also strategies[" +
                                            std::to_string(it->second) + "])");
    validate_strategy(c, s, path);
  }

  check_one_of("run.backend", c.run.backend, kBackends);
  if (c.run.emulate_dtype && c.run.backend == "cuda")
    throw ConfigError("run.emulate_dtype", "emulates a 16-bit device on backend cpu; backend cuda computes in model.dtype itself");
  if (c.run.iterations < 1)
    throw ConfigError("run.iterations", "must be at least 1, got " + std::to_string(c.run.iterations));
  if (!std::isfinite(c.run.timeout_s) || c.run.timeout_s < 0 || c.run.timeout_s > kMaxTimeoutS)
    throw ConfigError("run.timeout_s", "must be 0 (no timeout) or a number of seconds up to " + num(kMaxTimeoutS) +
                                           ", got " + num(c.run.timeout_s));
}

}  // namespace moe
