# Sourced by the CLI tests (after bin, src and tmp are set): fail and expect.
fail() { echo "FAIL: $*"; exit 1; }

# expect CODE PATTERN -- command...: the command exits CODE within 120 s and prints PATTERN.
expect() {
  local code="$1" pattern="$2"; shift 3
  timeout 120 "$@" > "$tmp/out" 2>&1; local rc=$?
  [ "$rc" -ne 124 ] || fail "hung: $*"
  [ "$rc" -eq "$code" ] || { cat "$tmp/out"; fail "exit $rc (want $code): $*"; }
  grep -q -- "$pattern" "$tmp/out" || { cat "$tmp/out"; fail "message lacks '$pattern': $*"; }
}
