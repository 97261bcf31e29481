// The compare subcommand: options, loading every file (the first bad one ends the command with
// exit 2, naming the file and the reason), rendering, stdout or --out (written atomically).
#include "cli/compare_command.hpp"

#include <fstream>
#include <iostream>
#include <memory>
#include <sys/stat.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "report/compare.hpp"
#include "report/compare_format.hpp"

namespace moe {
namespace {

struct CompareArgs {
  std::vector<std::string> files;
  std::string format = "table";
  std::string baseline;
  std::string out_path;
};

// --out must name a writable file (not a directory) before anything is read.
void check_out_path(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw ConfigError("--out", "'" + path + "' is a directory");
  const std::string probe = path + ".moe-bench-write-test";
  std::ofstream f(probe);
  if (!f) throw ConfigError("--out", "cannot write to '" + path + "' (does the directory exist?)");
  f.close();
  std::remove(probe.c_str());
}

int run_compare(const CompareArgs& a, const MpiSession& mpi) {
  if (mpi.size() > 1 && mpi.rank() != 0) return 0;  // one process is enough
  if (!a.out_path.empty()) check_out_path(a.out_path);
  std::vector<ResultsDocument> docs;
  for (const std::string& f : a.files)
    for (ResultsDocument& d : load_results_file(f)) docs.push_back(std::move(d));
  CompareOptions options;
  options.baseline = a.baseline;
  const CompareTable table = build_compare_table(docs, options);
  const std::string text = format_compare(table, a.format, a.files);
  if (a.out_path.empty()) {
    std::cout << text;
  } else {
    write_file_atomic(a.out_path, text);
    std::cerr << "compare: " << table.rows.size() << " rows written to " << a.out_path << "\n";
  }
  return 0;
}

}  // namespace

Command add_compare_command(CLI::App& app) {
  auto args = std::make_shared<CompareArgs>();
  Command c;
  c.app = app.add_subcommand("compare",
                             "Compare results JSON files: one row per (file, strategy) with TPS, TPOT, ratios against a "
                             "baseline, balancedness, overlap, verification and prediction error (no mpirun needed)");
  c.app->add_option("files", args->files, "Results JSON files written by run or simulate")->required();
  c.app->add_option("--format", args->format, "table (default) | markdown | csv | json | html")
      ->check(CLI::IsMember({"table", "markdown", "csv", "json", "html"}));
  c.app->add_option("--baseline", args->baseline,
                    "Strategy name the ratios are computed against (default: each file's first strategy)");
  c.app->add_option("-o,--out", args->out_path, "Write to this file (atomically) instead of stdout");
  c.run = [args](MpiSession& mpi, const std::vector<std::string>&) { return run_compare(*args, mpi); };
  return c;
}

}  // namespace moe
