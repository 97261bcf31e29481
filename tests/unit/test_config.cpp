// Tests for src/core/config.*: parsing (defaults, unknown keys, types), every validation rule
// (path and reason of the ConfigError), round trip through config_to_json, and the shipped configs.
#include <catch2/catch.hpp>

#include <functional>
#include <string>

#include "core/config.hpp"
#include "core/error.hpp"
#include "expect_config_error.hpp"
#include "runner/run_validation.hpp"

using moe::Config;
using moe::ConfigError;
using json = nlohmann::json;

using moe::testing::expect_config_error;

namespace {

// Minimal valid config: 1 node x 4 gpus, every optional key left out.
json base() {
  return json::parse(R"({
    "name": "tiny",
    "model": {"layers": 2, "hidden": 4, "ffn_hidden": 8, "experts": 4, "heads": 2, "head_dim": 2},
    "workload": {"batch_sequences": 4, "prompt_tokens": 3, "decode_steps": 2},
    "cluster": {"nodes": 1, "gpus_per_node": 4},
    "strategies": [
      {"name": "baseline", "kind": "tp_pp", "tp": 2, "pp": 2, "microbatches": 2},
      {"name": "proposed", "kind": "ep", "ep": 4}
    ]
  })");
}

std::string config_path(const std::string& file) { return std::string(MOE_SOURCE_DIR) + "/configs/" + file; }


void parse_fails(const json& j, const std::string& path, const std::string& needle) {
  expect_config_error([&] { moe::parse_config(j); }, path, needle);
}

void validate_fails(const json& j, const std::string& path, const std::string& needle) {
  Config c = moe::parse_config(j);  // parsing must succeed: these are range/consistency errors
  expect_config_error([&] { moe::validate_config(c); }, path, needle);
}

void require_same(const Config& a, const Config& b) {
  CHECK(a.name == b.name);
  const auto &ma = a.model, &mb = b.model;
  CHECK(ma.layers == mb.layers);
  CHECK(ma.hidden == mb.hidden);
  CHECK(ma.ffn_hidden == mb.ffn_hidden);
  CHECK(ma.experts == mb.experts);
  CHECK(ma.top_k == mb.top_k);
  CHECK(ma.heads == mb.heads);
  CHECK(ma.head_dim == mb.head_dim);
  CHECK(ma.attention == mb.attention);
  CHECK(ma.renormalize == mb.renormalize);
  CHECK(ma.dtype == mb.dtype);
  CHECK(ma.seed == mb.seed);
  const auto &wa = a.workload, &wb = b.workload;
  CHECK(wa.batch_sequences == wb.batch_sequences);
  CHECK(wa.prompt_tokens == wb.prompt_tokens);
  CHECK(wa.decode_steps == wb.decode_steps);
  CHECK(wa.warmup_steps == wb.warmup_steps);
  CHECK(wa.routing == wb.routing);
  const auto &ca = a.cluster, &cb = b.cluster;
  CHECK(ca.nodes == cb.nodes);
  CHECK(ca.gpus_per_node == cb.gpus_per_node);
  CHECK(ca.gpu.name == cb.gpu.name);
  CHECK(ca.gpu.memory_gb == cb.gpu.memory_gb);
  CHECK(ca.gpu.peak_tflops == cb.gpu.peak_tflops);
  CHECK(ca.gpu.hbm_gb_s == cb.gpu.hbm_gb_s);
  for (auto links : {std::make_pair(ca.intra_node, cb.intra_node), std::make_pair(ca.inter_node, cb.inter_node)}) {
    CHECK(links.first.bandwidth_gb_s == links.second.bandwidth_gb_s);
    CHECK(links.first.latency_us == links.second.latency_us);
  }
  CHECK(ca.inter_node.nics_per_node == cb.inter_node.nics_per_node);
  REQUIRE(a.strategies.size() == b.strategies.size());
  for (size_t i = 0; i < a.strategies.size(); ++i) {
    const auto &sa = a.strategies[i], &sb = b.strategies[i];
    CHECK(sa.name == sb.name);
    CHECK(sa.kind == sb.kind);
    CHECK(sa.tp == sb.tp);
    CHECK(sa.pp == sb.pp);
    CHECK(sa.microbatches == sb.microbatches);
    CHECK(sa.ep == sb.ep);
    CHECK(sa.expert_tp == sb.expert_tp);
    CHECK(sa.chunks == sb.chunks);
    CHECK(sa.placement == sb.placement);
    CHECK(sa.placement_profile == sb.placement_profile);
    CHECK(sa.load_balancing.policy == sb.load_balancing.policy);
    CHECK(sa.load_balancing.threshold == sb.load_balancing.threshold);
    CHECK(sa.load_balancing.step == sb.load_balancing.step);
    CHECK(sa.load_balancing.update_interval_tokens == sb.load_balancing.update_interval_tokens);
    CHECK(sa.load_balancing.capacity_factor == sb.load_balancing.capacity_factor);
  }
  CHECK(a.run.backend == b.run.backend);
  CHECK(a.run.iterations == b.run.iterations);
  CHECK(a.run.verify == b.run.verify);
}

std::vector<std::string> keys_of(const nlohmann::ordered_json& o) {
  std::vector<std::string> keys;
  for (const auto& item : o.items()) keys.push_back(item.key());
  return keys;
}

}  // namespace

TEST_CASE("config: the minimal config parses with every default filled in", "[config]") {
  const Config c = moe::parse_config(base());
  CHECK(c.name == "tiny");
  CHECK(c.model.top_k == 2);
  CHECK(c.model.attention);
  CHECK(c.model.renormalize);
  CHECK(c.model.dtype == "fp16");
  CHECK(c.model.seed == 1234);
  CHECK(c.workload.warmup_steps == 1);
  CHECK(c.workload.routing == "gate");
  CHECK(c.cluster.gpu.name == "H100-SXM-80GB");
  CHECK(c.cluster.gpu.memory_gb == 80);
  CHECK(c.cluster.intra_node.bandwidth_gb_s == 450);
  CHECK(c.cluster.inter_node.nics_per_node == 8);
  REQUIRE(c.strategies.size() == 2);
  CHECK(c.strategies[0].load_balancing.policy == "none");
  CHECK(c.strategies[0].load_balancing.threshold == 1.2);
  CHECK(c.strategies[0].load_balancing.update_interval_tokens == 100);
  CHECK(c.strategies[1].expert_tp == 1);
  CHECK(c.strategies[1].chunks == 1);
  CHECK(c.strategies[1].placement == "round_robin");
  CHECK(c.run.backend == "auto");
  CHECK(c.run.iterations == 3);
  CHECK(c.run.verify);
  CHECK(c.run.timeout_s == 300);
  CHECK_NOTHROW(moe::validate_config(c));
}

TEST_CASE("config: nested values override defaults", "[config]") {
  json j = base();
  j["model"]["seed"] = 18446744073709551615ull;
  j["cluster"]["inter_node"] = {{"latency_us", 7.5}};
  j["strategies"][1]["load_balancing"] = {{"policy", "paper"}, {"step", 0.25}};
  const Config c = moe::parse_config(j);
  CHECK(c.model.seed == 18446744073709551615ull);
  CHECK(c.cluster.inter_node.latency_us == 7.5);
  CHECK(c.cluster.inter_node.bandwidth_gb_s == 50);  // untouched default
  CHECK(c.strategies[1].load_balancing.policy == "paper");
  CHECK(c.strategies[1].load_balancing.step == 0.25);
  CHECK(c.strategies[1].load_balancing.threshold == 1.2);
}

TEST_CASE("config: required keys", "[config]") {
  const std::vector<std::pair<std::string, std::string>> required = {
      {"", "name"},           {"", "model"},          {"", "workload"},          {"", "cluster"},
      {"", "strategies"},     {"model", "layers"},    {"model", "hidden"},       {"model", "ffn_hidden"},
      {"model", "experts"},   {"model", "heads"},     {"model", "head_dim"},     {"workload", "batch_sequences"},
      {"workload", "prompt_tokens"}, {"workload", "decode_steps"}, {"cluster", "nodes"}, {"cluster", "gpus_per_node"}};
  for (const auto& [section, key] : required) {
    SECTION(section + "." + key) {
      json j = base();
      (section.empty() ? j : j[section]).erase(key);
      parse_fails(j, section.empty() ? key : section + "." + key, "required");
    }
  }
  SECTION("strategy name and kind") {
    json j = base();
    j["strategies"][1].erase("name");
    parse_fails(j, "strategies[1].name", "required");
    j = base();
    j["strategies"][0].erase("kind");
    parse_fails(j, "strategies[0].kind", "required");
  }
  SECTION("heads and head_dim may be omitted without attention") {
    json j = base();
    j["model"]["attention"] = false;
    j["model"].erase("heads");
    j["model"].erase("head_dim");
    const Config c = moe::parse_config(j);
    CHECK_FALSE(c.model.attention);
    CHECK_NOTHROW(moe::validate_config(c));
  }
}

TEST_CASE("config: unknown keys are errors naming their path", "[config]") {
  json j = base();
  SECTION("top level") { j["colour"] = "red"; parse_fails(j, "colour", "unknown key 'colour'"); }
  SECTION("model") { j["model"]["hiden"] = 4; parse_fails(j, "model.hiden", "unknown key"); }
  SECTION("deeply nested") {
    j["cluster"]["gpu"] = {{"memory_gib", 80}};
    parse_fails(j, "cluster.gpu.memory_gib", "unknown key");
  }
  SECTION("nics_per_node on the intra-node link") {
    j["cluster"]["intra_node"] = {{"nics_per_node", 2}};
    parse_fails(j, "cluster.intra_node.nics_per_node", "inter_node");
  }
  SECTION("in a strategy") { j["strategies"][1]["overlapp"] = "chunked"; parse_fails(j, "strategies[1].overlapp", "unknown key"); }
  SECTION("overlap of the wrong type") { j["strategies"][1]["overlap"] = true; parse_fails(j, "strategies[1].overlap", "string"); }
  SECTION("an ep key in a tp_pp strategy") { j["strategies"][0]["ep"] = 4; parse_fails(j, "strategies[0].ep", "kind 'ep'"); }
  SECTION("a tp_pp key in an ep strategy") { j["strategies"][1]["tp"] = 2; parse_fails(j, "strategies[1].tp", "kind 'tp_pp'"); }
  SECTION("in load_balancing") {
    j["strategies"][1]["load_balancing"] = {{"polcy", "paper"}};
    parse_fails(j, "strategies[1].load_balancing.polcy", "unknown key");
  }
  SECTION("run") { j["run"] = {{"threads", 4}}; parse_fails(j, "run.threads", "unknown key"); }
}

TEST_CASE("config: wrong types are errors", "[config]") {
  json j = base();
  SECTION("string for an integer") { j["model"]["hidden"] = "256"; parse_fails(j, "model.hidden", "\"256\""); }
  SECTION("fraction for an integer") { j["model"]["hidden"] = 2.5; parse_fails(j, "model.hidden", "must be an integer, got number 2.5"); }
  SECTION("integer out of range") {
    j["model"]["layers"] = 1ll << 40;
    parse_fails(j, "model.layers", "range");
    j["model"]["layers"] = -(1ll << 40);
    parse_fails(j, "model.layers", "range");
    j["model"]["layers"] = 1ull << 40;
    parse_fails(j, "model.layers", "range");
  }
  SECTION("string for a bool") { j["model"]["attention"] = "yes"; parse_fails(j, "model.attention", "true or false"); }
  SECTION("negative seed") { j["model"]["seed"] = -1; parse_fails(j, "model.seed", "(uint64), got -1"); }
  SECTION("string for a number") { j["cluster"]["gpu"] = {{"memory_gb", "80"}}; parse_fails(j, "cluster.gpu.memory_gb", "must be a number"); }
  SECTION("number for a string") { j["name"] = 5; parse_fails(j, "name", "must be a string"); }
  SECTION("int for a bool") { j["run"] = {{"verify", 1}}; parse_fails(j, "run.verify", "true or false, got 1"); }
  SECTION("section not an object") { j["model"] = json::array(); parse_fails(j, "model", "must be an object"); }
  SECTION("strategies not an array") { j["strategies"] = json::object(); parse_fails(j, "strategies", "non-empty array"); }
  SECTION("strategies empty") { j["strategies"] = json::array(); parse_fails(j, "strategies", "non-empty array"); }
  SECTION("strategy not an object") { j["strategies"][1] = 3; parse_fails(j, "strategies[1]", "must be an object"); }
  SECTION("config not an object") { parse_fails(json::array(), "", "JSON object"); }
}

TEST_CASE("config: enumerated values", "[config]") {
  json j = base();
  SECTION("model.dtype") { j["model"]["dtype"] = "fp8"; parse_fails(j, "model.dtype", "got 'fp8'"); }
  SECTION("run.backend") { j["run"] = {{"backend", "tpu"}}; parse_fails(j, "run.backend", "auto | cpu | cuda, got 'tpu'"); }
  SECTION("strategy kind") { j["strategies"][0]["kind"] = "dp"; parse_fails(j, "strategies[0].kind", "got 'dp'"); }
  SECTION("load_balancing.policy") {
    j["strategies"][1]["load_balancing"] = {{"policy", "eplb"}};
    parse_fails(j, "strategies[1].load_balancing.policy", "none | paper, got 'eplb'");
  }
  SECTION("workload.routing: unknown name") {
    j["workload"]["routing"] = "skewed";
    parse_fails(j, "workload.routing", "unsupported routing 'skewed' (gate | uniform | zipf:s");
  }
  SECTION("workload.routing: bad parameter") {
    j["workload"]["routing"] = "zipf:x";
    parse_fails(j, "workload.routing", "'zipf:x' needs a number");
  }
  SECTION("workload.routing: trace without a file") {
    j["workload"]["routing"] = "trace:#proposed";
    parse_fails(j, "workload.routing", "needs a results file");
  }
}

TEST_CASE("config: workload.routing accepts the gate, distributions and traces", "[config]") {
  for (const std::string r : {"gate", "uniform", "zipf:1.2", "hot:0.5,local:0.7", "hot:0.5,drift:4", "trace:run.json",
                              "trace:results/run.json#proposed"}) {
    INFO(r);
    json j = base();
    j["workload"]["routing"] = r;
    CHECK(moe::parse_config(j).workload.routing == r);
  }
}

TEST_CASE("config: text and file loading errors name the source", "[config]") {
  expect_config_error([] { moe::parse_config_text("{\"name\": ", "broken.json"); }, "", "broken.json");
  expect_config_error([] { moe::parse_config_text("{\"name\": ", "broken.json"); }, "", "parse error");
  expect_config_error([] { moe::load_config_file("/nonexistent/x.json"); }, "",
               "cannot open config file '/nonexistent/x.json'");
  const Config c = moe::parse_config_text(base().dump(), "inline");
  CHECK(c.name == "tiny");
}

TEST_CASE("config: validation rules", "[config][validate]") {
  json j = base();
  SECTION("name non-empty") { j["name"] = ""; validate_fails(j, "name", "non-empty"); }
  SECTION("run.timeout_s non-negative") { j["run"]["timeout_s"] = -1; validate_fails(j, "run.timeout_s", "got -1"); }
  SECTION("run.timeout_s bounded") { j["run"]["timeout_s"] = 1e9; validate_fails(j, "run.timeout_s", "up to 604800"); }
  SECTION("run.timeout_s 0 disables") { j["run"]["timeout_s"] = 0; CHECK_NOTHROW(moe::validate_config(moe::parse_config(j))); }
  for (const char* key : {"layers", "hidden", "ffn_hidden", "experts"}) {
    SECTION(std::string("model.") + key + " positive") {
      j["model"][key] = -3;
      validate_fails(j, std::string("model.") + key, "must be a positive integer, got -3");
    }
  }
  SECTION("top_k at least 1") { j["model"]["top_k"] = 0; validate_fails(j, "model.top_k", "got 0"); }
  SECTION("top_k at most experts") { j["model"]["top_k"] = 5; validate_fails(j, "model.top_k", "model.experts = 4], got 5"); }
  SECTION("heads positive with attention") { j["model"]["heads"] = 0; validate_fails(j, "model.heads", "got 0"); }
  SECTION("head_dim positive with attention") { j["model"]["head_dim"] = -1; validate_fails(j, "model.head_dim", "got -1"); }
  SECTION("batch_sequences positive") { j["workload"]["batch_sequences"] = 0; validate_fails(j, "workload.batch_sequences", "got 0"); }
  SECTION("prompt_tokens positive") { j["workload"]["prompt_tokens"] = 0; validate_fails(j, "workload.prompt_tokens", "got 0"); }
  SECTION("decode_steps non-negative") { j["workload"]["decode_steps"] = -1; validate_fails(j, "workload.decode_steps", "non-negative integer, got -1"); }
  SECTION("decode_steps may be 0") { j["workload"]["decode_steps"] = 0; CHECK_NOTHROW(moe::validate_config(moe::parse_config(j))); }
  SECTION("warmup_steps non-negative") { j["workload"]["warmup_steps"] = -2; validate_fails(j, "workload.warmup_steps", "got -2"); }
  SECTION("cluster.nodes positive") { j["cluster"]["nodes"] = 0; validate_fails(j, "cluster.nodes", "got 0"); }
  SECTION("cluster.gpus_per_node positive") { j["cluster"]["gpus_per_node"] = -4; validate_fails(j, "cluster.gpus_per_node", "got -4"); }
  for (const char* key : {"memory_gb", "peak_tflops", "hbm_gb_s"}) {
    SECTION(std::string("cluster.gpu.") + key + " positive") {
      j["cluster"]["gpu"] = {{key, 0}};
      validate_fails(j, std::string("cluster.gpu.") + key, "must be positive, got 0");
    }
  }
  for (const char* link : {"intra_node", "inter_node"}) {
    for (const char* key : {"bandwidth_gb_s", "latency_us"}) {
      SECTION(std::string("cluster.") + link + "." + key + " positive") {
        j["cluster"][link] = {{key, -1.5}};
        validate_fails(j, std::string("cluster.") + link + "." + key, "got -1.5");
      }
    }
  }
  SECTION("nics_per_node positive") {
    j["cluster"]["inter_node"] = {{"nics_per_node", 0}};
    validate_fails(j, "cluster.inter_node.nics_per_node", "got 0");
  }
  SECTION("strategy name non-empty") { j["strategies"][1]["name"] = ""; validate_fails(j, "strategies[1].name", "non-empty"); }
  SECTION("strategy names unique") {
    j["strategies"][1]["name"] = "baseline";
    validate_fails(j, "strategies[1].name", "duplicate strategy name 'baseline'");
  }
  SECTION("tp positive") { j["strategies"][0]["tp"] = 0; validate_fails(j, "strategies[0].tp", "got 0"); }
  SECTION("pp positive") { j["strategies"][0]["pp"] = -2; validate_fails(j, "strategies[0].pp", "got -2"); }
  SECTION("microbatches positive") { j["strategies"][0]["microbatches"] = 0; validate_fails(j, "strategies[0].microbatches", "got 0"); }
  SECTION("tp*pp equals the cluster size") {
    j["strategies"][0]["tp"] = 8;
    validate_fails(j, "strategies[0].tp", "tp*pp = 8*2 = 16 but the cluster has 1 nodes x 4 gpus = 4");
  }
  SECTION("layers divisible by pp") {
    j["model"]["layers"] = 3;
    validate_fails(j, "strategies[0].pp", "model.layers = 3 is not divisible by pp = 2");
  }
  SECTION("heads divisible by tp") {
    j["model"]["heads"] = 3;
    validate_fails(j, "strategies[0].tp", "model.heads = 3 is not divisible by tp = 2");
  }
  SECTION("ffn_hidden divisible by tp") {
    j["model"]["ffn_hidden"] = 9;
    validate_fails(j, "strategies[0].tp", "model.ffn_hidden = 9 is not divisible by tp = 2");
  }
  SECTION("heads need not divide by tp without attention") {
    j["model"]["heads"] = 3;
    j["model"]["attention"] = false;
    CHECK_NOTHROW(moe::validate_config(moe::parse_config(j)));
  }
  SECTION("batch divisible by microbatches") {
    j["strategies"][0]["microbatches"] = 3;
    j["strategies"].erase(1);  // leave the ep strategy out of this one
    validate_fails(j, "strategies[0].microbatches", "batch_sequences = 4 is not divisible by microbatches = 3");
  }
  SECTION("ep positive") { j["strategies"][1]["ep"] = 0; validate_fails(j, "strategies[1].ep", "got 0"); }
  SECTION("an ep overlap mode on tp_pp") {
    j["strategies"][0]["overlap"] = "chunked";
    validate_fails(j, "strategies[0].overlap", "none | pipelined, got 'chunked'");
  }
  SECTION("a tp_pp overlap mode on ep") {
    j["strategies"][1]["overlap"] = "pipelined";
    validate_fails(j, "strategies[1].overlap", "none | chunked | two_batch, got 'pipelined'");
  }
  SECTION("expert_tp: ep 2 x expert_tp 2 on 4 ranks") {
    j["strategies"][1]["expert_tp"] = 2;
    j["strategies"][1]["ep"] = 2;
    CHECK_NOTHROW(moe::validate_config(moe::parse_config(j)));
  }
  SECTION("expert_tp positive") {
    j["strategies"][1]["expert_tp"] = 0;
    validate_fails(j, "strategies[1].expert_tp", "got 0");
  }
  SECTION("ep*expert_tp equals the cluster size with expert_tp") {
    j["strategies"][1]["expert_tp"] = 2;
    validate_fails(j, "strategies[1].ep", "ep*expert_tp = 4*2 = 8 but the cluster has 1 nodes x 4 gpus = 4");
  }
  SECTION("expert_tp divides gpus_per_node") {
    j["cluster"] = {{"nodes", 2}, {"gpus_per_node", 2}};
    j["strategies"][0]["tp"] = 2;
    j["strategies"][1]["expert_tp"] = 4;
    j["strategies"][1]["ep"] = 1;
    validate_fails(j, "strategies[1].expert_tp", "expert_tp = 4 does not divide cluster.gpus_per_node = 2");
  }
  SECTION("ffn_hidden divisible by expert_tp") {
    j["model"]["ffn_hidden"] = 9;
    j["strategies"].erase(0);
    j["strategies"][0]["expert_tp"] = 2;
    j["strategies"][0]["ep"] = 2;
    validate_fails(j, "strategies[0].expert_tp", "model.ffn_hidden = 9 is not divisible by expert_tp = 2");
  }
  SECTION("batch divisible by ep*expert_tp") {
    j["workload"]["batch_sequences"] = 2;
    j["strategies"][0]["microbatches"] = 1;
    j["strategies"][1]["expert_tp"] = 2;
    j["strategies"][1]["ep"] = 2;
    validate_fails(j, "strategies[1].ep", "batch_sequences = 2 is not divisible by ep*expert_tp = 4");
  }
  SECTION("chunks at least 1") { j["strategies"][1]["chunks"] = 0; validate_fails(j, "strategies[1].chunks", "got 0"); }
  SECTION("chunks otherwise unconstrained") {
    j["strategies"][1]["chunks"] = 7;
    CHECK_NOTHROW(moe::validate_config(moe::parse_config(j)));
  }
  SECTION("placement non-empty") { j["strategies"][1]["placement"] = ""; validate_fails(j, "strategies[1].placement", "must be one of"); }
  SECTION("placement known") {
    j["strategies"][1]["placement"] = "magic";
    validate_fails(j, "strategies[1].placement", "round_robin | balanced | topology_aware, got 'magic'");
  }
  SECTION("ep*expert_tp equals the cluster size") {
    j["strategies"][1]["ep"] = 16;
    validate_fails(j, "strategies[1].ep", "ep*expert_tp = 16*1 = 16 but the cluster has 1 nodes x 4 gpus = 4");
  }
  SECTION("batch divisible by ep") {
    j["workload"]["batch_sequences"] = 6;
    j["strategies"][0]["microbatches"] = 1;
    validate_fails(j, "strategies[1].ep", "batch_sequences = 6 is not divisible by ep = 4");
  }
  SECTION("threshold above 1") {
    j["strategies"][1]["load_balancing"] = {{"threshold", 1.0}};
    validate_fails(j, "strategies[1].load_balancing.threshold", "greater than 1, got 1");
  }
  SECTION("step in (0, 1)") {
    j["strategies"][0]["load_balancing"] = {{"step", 1.0}};
    validate_fails(j, "strategies[0].load_balancing.step", "(0, 1), got 1");
    j["strategies"][0]["load_balancing"] = {{"step", 0}};
    validate_fails(j, "strategies[0].load_balancing.step", "got 0");
  }
  SECTION("update_interval_tokens positive") {
    j["strategies"][1]["load_balancing"] = {{"update_interval_tokens", 0}};
    validate_fails(j, "strategies[1].load_balancing.update_interval_tokens", "got 0");
  }
  SECTION("capacity_factor non-negative") {
    j["strategies"][1]["load_balancing"] = {{"capacity_factor", -0.5}};
    validate_fails(j, "strategies[1].load_balancing.capacity_factor", "got -0.5");
  }
  SECTION("run.iterations at least 1") { j["run"] = {{"iterations", 0}}; validate_fails(j, "run.iterations", "at least 1, got 0"); }
}

TEST_CASE("config: validation also rejects bad enums built in code", "[config][validate]") {
  Config c = moe::parse_config(base());
  c.model.dtype = "fp64";
  expect_config_error([&] { moe::validate_config(c); }, "model.dtype", "got 'fp64'");
  c = moe::parse_config(base());
  c.strategies[1].kind = "dp";
  expect_config_error([&] { moe::validate_config(c); }, "strategies[1].kind", "got 'dp'");
  // Code that switches on the kind refuses a spelling the kind table does not list, naming the kinds.
  expect_config_error([&] { moe::kind_of(c.strategies[1]); }, "strategies[].kind", "allowed kinds: tp_pp | ep");
  CHECK(moe::kind_of(c.strategies[0]) == moe::StrategyKind::tp_pp);
  CHECK(moe::strategy_kind_names() == std::vector<std::string>{"tp_pp", "ep"});
  c = moe::parse_config(base());
  c.strategies.clear();
  expect_config_error([&] { moe::validate_config(c); }, "strategies", "non-empty");
}

TEST_CASE("config: validate_for_run", "[config][validate]") {
  SECTION("world size must match the cluster") {
    const Config c = moe::parse_config(base());
    expect_config_error([&] { moe::validate_for_run(c, 16, 4, "cpu"); }, "cluster", "mpirun -np 4");
    expect_config_error([&] { moe::validate_for_run(c, 16, 4, "cpu"); }, "cluster", "the run has 16");
    CHECK_NOTHROW(moe::validate_for_run(c, 4, 4, "cpu"));
  }
  SECTION("per-rank memory must fit the GPU") {
    json j = base();
    j["cluster"]["gpu"] = {{"memory_gb", 1e-6}};  // 1000 bytes; the tp_pp rank needs 2452 at fp32
    const Config c = moe::parse_config(j);
    expect_config_error([&] { moe::validate_for_run(c, 4, 4, "cpu"); }, "strategies[0]",
                 "needs 0.0 GB per rank on backend cpu (fp32): weights");
    expect_config_error([&] { moe::validate_for_run(c, 4, 4, "cpu"); }, "strategies[0]", "> cluster.gpu.memory_gb 1e-06");
  }
  SECTION("verification needs the reference to fit the host") {
    Config c = moe::load_config_file(config_path("paper-16xh100.json"));
    c.cluster.gpu.memory_gb = 1e6;
    c.run.verify = true;
    expect_config_error([&] { moe::validate_for_run(c, 16, 2, "cuda"); }, "run.verify", "set run.verify to false");
    expect_config_error([&] { moe::validate_for_run(c, 16, 2, "cuda"); }, "run.verify", "single-rank FP32 reference needs");
  }
}

TEST_CASE("config: round trip through config_to_json", "[config]") {
  for (const char* file : {"cpu-16rank.json", "cpu-4rank.json", "paper-16xh100.json", "skewed-32rank.json", ""}) {
    SECTION(std::string("config ") + (*file ? file : "minimal")) {
      const Config c = *file ? moe::load_config_file(config_path(file)) : moe::parse_config(base());
      const nlohmann::ordered_json out = moe::config_to_json(c);
      const Config back = moe::parse_config_text(out.dump(), "round-trip");
      require_same(c, back);
      CHECK(moe::config_to_json(back) == out);
    }
  }
  SECTION("key order and kind-relevant strategy keys") {
    json j = base();
    j["model"]["attention"] = false;
    j["model"].erase("heads");
    j["model"].erase("head_dim");
    const auto out = moe::config_to_json(moe::parse_config(j));
    using V = std::vector<std::string>;
    CHECK(keys_of(out) == V{"name", "model", "workload", "cluster", "strategies", "run"});
    CHECK(keys_of(out["model"]) == V{"layers", "hidden", "ffn_hidden", "experts", "top_k", "heads", "head_dim",
                                     "attention", "renormalize", "dtype", "seed"});
    CHECK(keys_of(out["cluster"]["inter_node"]) == V{"bandwidth_gb_s", "latency_us", "nics_per_node"});
    CHECK(keys_of(out["cluster"]["intra_node"]) == V{"bandwidth_gb_s", "latency_us"});
    CHECK(keys_of(out["strategies"][0]) == V{"name", "kind", "tp", "pp", "microbatches", "overlap", "load_balancing"});
    CHECK(keys_of(out["strategies"][1]) == V{"name", "kind", "ep", "expert_tp", "chunks", "overlap", "immediate_routing",
                                                 "placement", "load_balancing"});
    CHECK(keys_of(out["strategies"][1]["load_balancing"]) ==
          V{"policy", "threshold", "step", "update_interval_tokens", "capacity_factor"});
    CHECK(out["run"]["iterations"] == 3);
    CHECK_NOTHROW(moe::validate_config(moe::parse_config_text(out.dump(), "no-attention")));
  }
}

TEST_CASE("config: placement_profile of an ep strategy", "[config]") {
  json j = base();
  j["strategies"][1]["placement_profile"] = "zipf:1.2,local:0.8";
  const Config c = moe::parse_config(j);
  CHECK(c.strategies[1].placement_profile == "zipf:1.2,local:0.8");
  CHECK(moe::config_to_json(c)["strategies"][1]["placement_profile"] == "zipf:1.2,local:0.8");
  CHECK_FALSE(moe::config_to_json(moe::parse_config(base()))["strategies"][1].contains("placement_profile"));
  CHECK(moe::parse_config(base()).strategies[1].placement_profile.empty());

  j["strategies"][1]["placement_profile"] = "zipf:x";
  parse_fails(j, "strategies[1].placement_profile", "needs a number");
  j["strategies"][1]["placement_profile"] = "gate";
  parse_fails(j, "strategies[1].placement_profile", "not a routing distribution");
  j["strategies"][1]["placement_profile"] = 1.2;
  parse_fails(j, "strategies[1].placement_profile", "must be a string");
  json tp = base();
  tp["strategies"][0]["placement_profile"] = "uniform";
  parse_fails(tp, "strategies[0].placement_profile", "applies only to strategies of kind 'ep'");

  Config built = moe::parse_config(base());
  built.strategies[1].placement_profile = "hot:2";
  expect_config_error([&] { moe::validate_config(built); }, "strategies[1].placement_profile", "in [0, 1]");
}

TEST_CASE("config: shipped configs load and validate", "[config][configs]") {
  SECTION("skewed-32rank plans for zipf 1.2 routing") {
    const Config c = moe::load_config_file(config_path("skewed-32rank.json"));
    CHECK(c.cluster.nodes == 4);
    CHECK(c.cluster.gpus_per_node == 8);
    CHECK(c.model.experts == 16);
    CHECK(c.strategies[1].placement == "topology_aware");
    CHECK(c.strategies[1].placement_profile == "zipf:1.2");
    CHECK_NOTHROW(moe::validate_for_run(c, 32, 4, "cpu"));
  }
  SECTION("cpu-16rank") {
    const Config c = moe::load_config_file(config_path("cpu-16rank.json"));
    CHECK(c.name == "cpu-16rank");
    CHECK(c.run.backend == "cpu");
    CHECK(c.strategies[1].load_balancing.policy == "paper");
    CHECK_NOTHROW(moe::validate_for_run(c, 16, 4, "cpu"));
  }
  SECTION("cpu-4rank") {
    const Config c = moe::load_config_file(config_path("cpu-4rank.json"));
    CHECK(c.name == "cpu-4rank");
    CHECK(c.cluster.nodes * c.cluster.gpus_per_node == 4);
    CHECK_NOTHROW(moe::validate_for_run(c, 4, 4, "cpu"));
  }
  SECTION("paper-16xh100 is valid but does not fit 80 GB H100s") {
    const Config c = moe::load_config_file(config_path("paper-16xh100.json"));
    CHECK(c.workload.batch_sequences == 1024);
    CHECK(c.workload.prompt_tokens == 10000);
    CHECK(c.strategies[1].chunks == 4);
    CHECK_FALSE(c.run.verify);
    CHECK_NOTHROW(moe::validate_config(c));
    expect_config_error([&] { moe::validate_for_run(c, 16, 2, "cuda"); }, "strategies[0]", "GB");
    expect_config_error([&] { moe::validate_for_run(c, 16, 2, "cuda"); }, "strategies[0]", "on backend cuda (fp16)");
  }
}
