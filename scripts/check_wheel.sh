#!/usr/bin/env bash
# A regular (non-editable) install works: build a wheel from the tracked files alone, install it in
# a fresh virtual environment, then, from outside the source tree, list the targets and compile a
# small built-in model.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
(cd "$root" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$work/src"

echo "== wheel from a clean copy"
python3 -m pip wheel -q --no-deps -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/edgecc-*.whl)
echo "$wheel"
python3 -m zipfile -l "$wheel" | grep -q "edgecc/targets/boards/host.toml" || { echo "host.toml missing from the wheel"; exit 1; }

echo "== fresh virtual environment, regular install"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "${wheel}[models]"

cd "$work"  # nowhere near the source tree
export EDGECC_CACHE="$work/cache"
"$work/venv/bin/edgecc" targets | tee "$work/targets.txt"
for board in host raspberry-pi-5 jetson-orin-nano apple-m2-metal snapdragon-8-gen-2-hexagon; do
    grep -q "^$board " "$work/targets.txt" || { echo "target $board missing from 'edgecc targets'"; exit 1; }
done
"$work/venv/bin/edgecc" compile tinybert-4 --seq-len 16 --min-seconds 0.2 -o "$work/out/tinybert-4"
test -f "$work/out/tinybert-4/model.so"
grep -q '"status": "passed"' "$work/out/tinybert-4/report.json"
echo "wheel install: ok"
