// `moe-bench exchange` (see exchange_command.hpp).
#include "cli/exchange_command.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "backend/factory.hpp"
#include "core/error.hpp"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

struct ExchangeArgs {
  int64_t rows = 2048;      // rows each rank sends per exchange, over every rank (itself included)
  int64_t hidden = 2048;    // floats per row
  int iterations = 20;
};

// Median over `iterations` of the slowest rank's time of `op`, each after a barrier.
double median_ms(Comm& world, int iterations, const std::function<void()>& op) {
  std::vector<double> t;
  for (int i = 0; i < iterations; ++i) {
    world.barrier();
    const auto t0 = Clock::now();
    op();
    std::vector<double> ms{std::chrono::duration<double, std::milli>(Clock::now() - t0).count()};
    world.all_reduce_max_host(ms);
    t.push_back(ms[0]);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int run_exchange(const ExchangeArgs& a) {
  Backends b = make_backends("cpu", "fp32");
  ComputeBackend& compute = *b.compute;
  Comm& world = *b.world;
  const int n = world.size();
  std::vector<int64_t> rows(n);
  for (int p = 0; p < n; ++p) rows[p] = a.rows * (p + 1) / n - a.rows * p / n;
  DeviceMat send = compute.alloc_mat(a.rows, a.hidden), recv = compute.alloc_mat(a.rows, a.hidden);
  auto posted = [&](bool by_source) {
    const CommHandle h = world.post_all_to_all_v(send.view, rows, recv.view, rows, Stream::compute);
    if (!by_source) {
      world.wait(h, Stream::compute);
      return;
    }
    Event done;
    while (world.wait_next_source(h, Stream::compute, &done) >= 0) {
    }
  };
  for (int i = 0; i < 3; ++i) posted(false);  // warm-up (first touch, connections)
  const double alltoallv = median_ms(world, a.iterations, [&] { world.all_to_all_v(send.view, rows, recv.view, rows, Stream::compute); });
  const double post_wait = median_ms(world, a.iterations, [&] { posted(false); });
  const double by_source = median_ms(world, a.iterations, [&] { posted(true); });
  compute.reset_events();
  if (world.rank() == 0) {
    const int64_t off_rank = (a.rows - rows[0]) * a.hidden * 4;
    nlohmann::ordered_json j = {{"ranks", n}, {"rows_per_rank", a.rows}, {"row_bytes", a.hidden * 4},
                                {"bytes_to_other_ranks_per_rank", off_rank}, {"iterations", a.iterations},
                                {"mpi_alltoallv_ms", alltoallv}, {"posted_wait_ms", post_wait},
                                {"posted_by_source_ms", by_source}};
    std::cout << j.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

Command add_exchange_command(CLI::App& app) {
  auto args = std::make_shared<ExchangeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "exchange", "Time one all-to-all of a byte matrix: MPI_Alltoallv against the posted transfers ep uses (under mpirun)");
  cmd->add_option("--rows", args->rows, "Rows each rank sends, split evenly over every rank (default 2048)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--hidden", args->hidden, "Floats per row (default 2048: 8 KB rows)")->check(CLI::PositiveNumber);
  cmd->add_option("--iterations", args->iterations, "Timed exchanges; the median is reported (default 20)")
      ->check(CLI::PositiveNumber);
  return Command{cmd, [args](MpiSession&, const std::vector<std::string>&) { return run_exchange(*args); }};
}

}  // namespace moe
