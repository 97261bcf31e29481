#!/usr/bin/env bash
# Fuzzes the config parser and validator (tests/fuzz/fuzz_config.cpp) with libFuzzer for a bounded
# time: builds build-fuzz/ with Debian's clang (ASan + UBSan + coverage, CPU backend only), seeds
# from tests/fuzz/corpus (shipped configs and known bad inputs), and exits non-zero on any finding
# (a crash, a non-ConfigError exception, a sanitizer report, an input slower than 10 s or using more
# than 2 GB). Findings are written to build-fuzz/findings/; a fixed one goes into tests/fuzz/corpus.
#   scripts/fuzz.sh [SECONDS]      (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
scripts/install-deps.sh clang-14 libclang-rt-14-dev
source scripts/env.sh
cxx=$(command -v clang++-14 || command -v clang++ || true)
[ -n "$cxx" ] || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOE_FUZZ=ON -DMOE_ENABLE_CUDA=OFF -DMOE_BUILD_TESTS=OFF > /dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_config
mkdir -p build-fuzz/corpus build-fuzz/findings
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"
# New inputs go to build-fuzz/corpus; tests/fuzz/corpus is only read.
status=0
build-fuzz/fuzz_config build-fuzz/corpus tests/fuzz/corpus -dict=tests/fuzz/config.dict \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
  -artifact_prefix=build-fuzz/findings/ > build-fuzz/fuzz.log 2>&1 || status=$?
grep -E "^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|.*Test unit written)" build-fuzz/fuzz.log || true
execs=$(grep -Eo "stat::number_of_executed_units: [0-9]+" build-fuzz/fuzz.log | grep -Eo "[0-9]+$" || echo "?")
echo "fuzz.sh: ${execs} executions in ${seconds} s; exit ${status}; findings: $(ls build-fuzz/findings | wc -l)"
exit "$status"
