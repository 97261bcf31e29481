#!/usr/bin/env bash
# compare --format html rendered in a real browser: headless chromium screenshots the page (tall
# enough for the table rows of every shipped strategy above the charts) and the PNG must show the
# table and the charts' measured (blue) and simulated (orange) bars. Exit 77 (skipped) only when no
# chromium is installed; scripts/test.sh installs it.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
[ -n "$browser" ] || { echo "SKIP: chromium is not installed (scripts/install-deps.sh --test installs it)"; exit 77; }

# shot PAGE PNG: a headless screenshot with a throw-away profile (no sandbox: tests may run as root).
shot() {
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$tmp/profile" --window-size=1400,3000 --screenshot="$2" "file://$1" > "$tmp/browser.log" 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] && [ -s "$2" ] || { tail -20 "$tmp/browser.log"; fail "$browser exited $rc without a screenshot of $1"; }
}

"$bin" compare "$src"/results/*.json --format html --out "$tmp/report.html" || fail "compare --format html"
shot "$tmp/report.html" "$tmp/report.png"
# Colours of compare_html.cpp: measured #2c7fb8, simulated #e67e22 bars; expert #59a14f and
# tp_allreduce #e15759 segments of the phase chart.
/usr/bin/python3 "$src/tests/cli/png_check.py" --min-ink 0.03 --color 2c7fb8:2000 --color e67e22:1000 \
  --color 59a14f:300 --color e15759:300 "$tmp/report.png"
rc=$?
[ "$rc" -ne 77 ] || exit 77
[ "$rc" -eq 0 ] || fail "the rendered report looks blank or lacks its charts"

# The check itself must reject a blank page.
printf '<!DOCTYPE html><html><body></body></html>\n' > "$tmp/blank.html"
shot "$tmp/blank.html" "$tmp/blank.png"
if /usr/bin/python3 "$src/tests/cli/png_check.py" "$tmp/blank.png" > "$tmp/check.log"; then
  cat "$tmp/check.log"; fail "png_check.py accepted a blank page"
fi
echo "html_render: OK ($browser)"
