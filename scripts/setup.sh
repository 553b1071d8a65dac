#!/usr/bin/env bash
# One command on a fresh machine: system packages, Python packages, the emulated board, then the
# main job (compile a built-in model for this machine). `--no-demo` skips the main job.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=1
[ "${1:-}" = "--no-demo" ] && demo=0

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

echo "== system packages (cross gcc, QEMU, lld, Chromium for report checks, CMake for the deploy bundle rebuild)"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends \
    gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static lld chromium cmake >/dev/null

echo "== Python packages (pinned in pyproject.toml)"
python3 -m pip install -q --disable-pip-version-check -e ".[all,test]"

if edgecc board --help >/dev/null 2>&1; then
    echo "== emulated aarch64 board (cached under ~/.cache/edgecc)"
    edgecc board setup
fi

if [ "$demo" = 1 ]; then
    echo "== main job: compile tinybert-4 for this machine"
    edgecc compile tinybert-4 --target host -o out/tinybert-4-host
fi
