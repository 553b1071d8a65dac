"""Compile built-in models on the host and check each profile: do the kernels account for the
end-to-end time (90-110 %), and does every figure above 100 % of the roof carry its reason?

    python bench/profile_check.py                       # every built-in, default shapes
    python bench/profile_check.py tinybert-4 minilm-l6 --out /tmp/profiles

Prints one line per model and a JSON line per model to --json (default: stdout only). The machine's
load is printed with each line: on a shared machine the ratios move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def check(model: str, out: Path, min_seconds: float) -> dict:
    import edgecc

    started = time.time()
    report = edgecc.compile(model, "host", out / model, min_seconds=min_seconds, log=lambda *_: None).report
    profile = report["profile"]
    unexplained = [
        k["name"] for k in profile["kernels"] if k.get("pct_of_roofline", 0) > 100 and not k.get("above_roof")
    ]
    return {
        "model": model,
        "sum_over_end_to_end": round(profile["sum_over_end_to_end"], 3),
        "rounds_spread": [round(v, 3) for v in profile.get("sum_over_end_to_end_spread", [])],
        "sum_ms": round(profile["sum_ms"], 3),
        "end_to_end_ms": round(profile["end_to_end_ms"], 3),
        "runtime_calls": profile.get("runtime_calls"),
        "above_roof": {k["name"]: k["above_roof"] for k in profile["kernels"] if k.get("above_roof")},
        "above_roof_unexplained": unexplained,
        "latency_ms": round(report["latency"]["edgecc"]["median_ms"], 3),
        "ratio_vs_onnxruntime": round(report["latency"].get("ratio_vs_onnxruntime", 0), 3),
        "load_average": report["environment"]["load_average"],
        "seconds": round(time.time() - started),
    }


def main() -> int:
    from edgecc.frontend import BUILTIN_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(BUILTIN_MODELS))
    parser.add_argument("--out", type=Path, default=None, help="where the artifacts go (default: a temporary folder)")
    parser.add_argument("--min-seconds", type=float, default=0.5)
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgecc-profile-check-"))
    failed = 0
    for model in args.models:
        result = check(model, out, args.min_seconds)
        ok = 0.90 <= result["sum_over_end_to_end"] <= 1.10 and not result["above_roof_unexplained"]
        failed += not ok
        runtime = result["runtime_calls"] or {}
        print(
            f"{model:16s} kernels {result['sum_ms']:9.2f} ms of {result['end_to_end_ms']:9.2f} ms = "
            f"{100 * result['sum_over_end_to_end']:5.1f}%  runtime's own calls {runtime.get('ms', 0):.2f} ms "
            f"({runtime.get('calls_per_run', 0)})  above roof {len(result['above_roof'])} "
            f"(unexplained {len(result['above_roof_unexplained'])})  load {result['load_average'][0]:.1f}"
            f"{'' if ok else '  <- check'}",
            file=sys.stderr,
        )
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
