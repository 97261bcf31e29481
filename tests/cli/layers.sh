#!/usr/bin/env bash
# Layering: no #include under src/ runs from a lower layer to a higher one (the table in README.md's
# Layout section), and the check itself catches an upward include and a table that does not match src/.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source "$src/tests/cli/lib/expect.sh"

python3 "$src/scripts/check_layers.py" "$src" > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "upward includes in src/"; }

# A copy of the sources with one upward include (core includes runner) must fail and name the line.
mkdir -p "$tmp/repo" && cp -r "$src/src" "$src/README.md" "$tmp/repo/"
printf '#include "runner/runner.hpp"\n' >> "$tmp/repo/src/core/error.hpp"
expect 1 "src/core/error.hpp:.*core (layer 0) includes 'runner/runner.hpp' of runner" -- python3 "$src/scripts/check_layers.py" "$tmp/repo"

# A folder the table does not list is an error, not a pass.
rm -rf "$tmp/repo" && mkdir -p "$tmp/repo" && cp -r "$src/src" "$src/README.md" "$tmp/repo/"
mkdir "$tmp/repo/src/extra" && printf '#include "core/error.hpp"\n' > "$tmp/repo/src/extra/x.cpp"
expect 1 "folder 'extra' is not in README.md's layer table" -- python3 "$src/scripts/check_layers.py" "$tmp/repo"
# A row for a folder that is gone is stale documentation.
rm -rf "$tmp/repo" && mkdir -p "$tmp/repo" && cp -r "$src/src" "$src/README.md" "$tmp/repo/"
rm -r "$tmp/repo/src/sim"
expect 1 "names src/sim, which does not exist" -- python3 "$src/scripts/check_layers.py" "$tmp/repo"
echo "layers: ok"
