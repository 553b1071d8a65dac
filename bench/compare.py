"""edgecc vs ONNX Runtime vs PyTorch on the same model, inputs and thread count, in one run.

    python bench/compare.py tinybert-4 minilm-l6 --seq-len 128

Runtimes are measured in interleaved rounds (A, B, C, A, B, C, ...) so a noisy neighbour hurts
all of them alike; the table gives medians, the p10-p90 spread, CV and ratios to ONNX Runtime.
The result is printed and written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgecc.threads import host_threads

HERE = Path(__file__).resolve().parent


def _timer(run, seconds: float) -> list[float]:
    samples, deadline = [], time.perf_counter() + seconds
    while not samples or time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def _stats(samples: list[float]) -> dict:
    ms = np.asarray(samples) * 1e3
    return {"median": float(np.median(ms)), "p10": float(np.percentile(ms, 10)), "p90": float(np.percentile(ms, 90)),
            "cv": float(ms.std() / ms.mean()), "runs": int(ms.size)}


def _edgecc_runner(model: str, seq_len: int, logs: str | None):
    import edgecc
    from edgecc.artifact.loader import load_artifact

    out = Path(tempfile.mkdtemp(prefix=f"bench-{model}-"))
    result = edgecc.compile(model, "host", out / "artifact", seq_len=seq_len, measure=False,
                            tuning_logs=(logs,) if logs else (str(out / "no-logs"),), log=lambda *_: None)
    artifact = load_artifact(out / "artifact")
    applied = result.report["tuning"].get("applied", {})
    return artifact, applied, result.report["verification"]


def bench_model(model: str, seq_len: int, threads: int, rounds: int, seconds: float, logs: str | None) -> list:
    import onnxruntime as ort
    import torch

    from edgecc.frontend import builtin_model, export_builtin
    from edgecc.measure.bench import artifact_sample_inputs

    exported = export_builtin(model, 1, seq_len, progress=lambda *_: None)
    default_artifact, _, verification = _edgecc_runner(model, seq_len, None)
    inputs = artifact_sample_inputs(default_artifact)
    variants = {"edgecc (default schedules)": default_artifact}
    tuned_summary = None
    if logs:
        tuned_artifact, tuned_summary, _ = _edgecc_runner(model, seq_len, logs)
        if tuned_summary.get("tuned"):
            variants[f"edgecc (tuned: {tuned_summary['tuned']}/{tuned_summary['kernels']} kernels)"] = tuned_artifact
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(exported.onnx_path), options, providers=["CPUExecutionProvider"])
    torch.set_num_threads(threads)
    module, _ = builtin_model(model).build()
    torch_inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def run_torch():
        with torch.inference_mode():
            module(**torch_inputs)

    runners = {name: (lambda a=artifact: a.run(inputs)) for name, artifact in variants.items()}
    runners["ONNX Runtime"] = lambda: session.run(None, inputs)
    runners["PyTorch (eager)"] = run_torch
    for run in runners.values():  # warm-up
        for _ in range(3):
            run()
    samples = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            samples[name] += _timer(run, seconds)
    ort_median = _stats(samples["ONNX Runtime"])["median"]
    rows = []
    for name, values in samples.items():
        stats = _stats(values)
        rows.append((model, name, stats, stats["median"] / ort_median))
    print(f"{model}: verification {verification['status']} ({verification['reason']})", flush=True)
    return rows


def render(rows, seq_len: int, threads: int) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    lines = [f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu}, {threads} threads, batch 1, "
             f"seq {seq_len}, FP32. Interleaved rounds; ratio = median / ONNX Runtime median (below 1: faster).", "",
             "| model | runtime | median ms | p10-p90 ms | CV | runs | ratio vs ORT |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model, name, s, ratio in rows:
        lines.append(f"| {model} | {name} | {s['median']:.2f} | {s['p10']:.2f}-{s['p90']:.2f} | {s['cv']:.2f} | "
                     f"{s['runs']} | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["tinybert-4", "minilm-l6"])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=host_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per runtime per round")
    parser.add_argument("--tuning-logs", default="tuning_logs", help="'' to skip the tuned variant")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # edgecc's kernels get the same threads, set before TVM starts
    rows = []
    for model in args.models:
        rows += bench_model(model, args.seq_len, args.threads, args.rounds, args.seconds, args.tuning_logs or None)
    table = render(rows, args.seq_len, args.threads)
    print(table)
    args.output.write_text(table)


if __name__ == "__main__":
    main()
