// ExpertBank packs expert segments into its hidden scratch and runs each pack as grouped products:
// outputs equal silu(x W1_e) W2_e row by row, also when the rows exceed the scratch so that packs
// split an expert, for a column shard, and with an expert that has no rows.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_compute.hpp"
#include "model/generator.hpp"
#include "strategies/blocks.hpp"

using namespace moe;

namespace {

// out[r] = silu(x[r] . W1_e[:, c0:c0+cols]) . W2_e[c0:c0+cols, :], in double.
std::vector<double> expected_row(const ModelConfig& m, int layer, int e, int64_t c0, int64_t cols, const float* x) {
  const std::vector<float> w1 = generate_weight(m, layer, WeightKind::w1, e);
  const std::vector<float> w2 = generate_weight(m, layer, WeightKind::w2, e);
  std::vector<double> h(cols, 0.0), out(m.hidden, 0.0);
  for (int64_t j = 0; j < cols; ++j) {
    for (int i = 0; i < m.hidden; ++i) h[j] += double(x[i]) * w1[size_t(i) * m.ffn_hidden + c0 + j];
    h[j] = h[j] / (1 + std::exp(-h[j]));
  }
  for (int64_t j = 0; j < cols; ++j)
    for (int i = 0; i < m.hidden; ++i) out[i] += h[j] * w2[size_t(c0 + j) * m.hidden + i];
  return out;
}

}  // namespace

TEST_CASE("expert bank: packed grouped products equal the per-expert formula", "[expert_bank]") {
  ModelConfig m;
  m.layers = 1;
  m.hidden = 12;
  m.ffn_hidden = 20;
  m.experts = 4;
  auto compute = make_cpu_compute();
  const std::vector<int> experts = {3, 0, 2};
  const std::vector<int64_t> rows = {5, 0, 9};  // 14 rows: with a scratch of 4 rows, expert 2 spans 3 packs
  for (const auto& [c0, cols, block] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{0, 20, 4}, {10, 10, 64}}) {
    INFO("columns " << c0 << "+" << cols << ", scratch rows " << block);
    ExpertBank bank(*compute, m, 0, experts, c0, cols, block);
    std::vector<float> x(14 * 12);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.31 * i));
    DeviceMat dx = compute->alloc_mat(14, 12), dout = compute->alloc_mat(14, 12);
    compute->upload(x.data(), dx.view, Stream::compute);
    bank.run(dx.view, rows, dout.view);
    std::vector<float> out(14 * 12);
    compute->download(dout.view, out.data(), Stream::compute);
    int64_t r = 0;
    for (size_t i = 0; i < experts.size(); ++i)
      for (int64_t n = 0; n < rows[i]; ++n, ++r) {
        const std::vector<double> want = expected_row(m, 0, experts[i], c0, cols, x.data() + r * 12);
        for (int c = 0; c < 12; ++c) CHECK(out[size_t(r) * 12 + c] == Approx(want[c]).margin(1e-5));
      }
  }
}
