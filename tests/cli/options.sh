#!/usr/bin/env bash
# Option errors are input errors: exit 2 (not CLI11's 105-109), one "moe-bench: error:" line naming the
# option, plain range messages; --help and --version still exit 0.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source "$src/tests/cli/lib/expect.sh"

cfg="$src/configs/cpu-4rank.json"
expect 2 "^moe-bench: error: --iterations: must be a positive integer, got '0' (see moe-bench run --help)" -- \
  "$bin" run --config "$cfg" --iterations 0
! grep -q "1797693" "$tmp/out" || fail "the range message prints the double maximum"
expect 2 "^moe-bench: error: --iterations: must be a positive integer, got 'many'" -- "$bin" run --config "$cfg" --iterations many
expect 2 "^moe-bench: error: --config is required" -- "$bin" run
expect 2 "^moe-bench: error: --ranks: must be a positive integer, got '-3'" -- "$bin" validate --config "$cfg" --ranks -3
expect 2 "^moe-bench: error: .*--backend" -- "$bin" run --config "$cfg" --backend tpu
expect 2 "^moe-bench: error: unknown command 'bogus' (commands: run validate selftest simulate calibrate place exchange compare)" -- "$bin" bogus
expect 2 "^moe-bench: error: .*--format" -- "$bin" compare --format xml "$src/results/cpu-16rank.json"
expect 2 "^moe-bench: error: files is required" -- "$bin" compare
[ "$(grep -c "moe-bench: error:" "$tmp/out")" -eq 1 ] || { cat "$tmp/out"; fail "error printed more than once"; }
expect 0 "Usage" -- "$bin" run --help
expect 0 "moe-bench" -- "$bin" --version
echo "options: OK"
