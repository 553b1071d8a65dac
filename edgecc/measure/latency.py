"""Latency measured the same way for edgecc and for the reference runtime."""

from __future__ import annotations

import time

import numpy as np

UNSTABLE_CV = 0.10  # coefficient of variation above which timings are flagged as unstable


def latency_stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    return {
        "runs": int(ms.size),
        "min_ms": float(ms.min()),
        "p10_ms": float(np.percentile(ms, 10)),
        "median_ms": float(np.median(ms)),
        "mean_ms": mean,
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "std_ms": std,
        "cv": cv,
        "unstable": bool(cv > UNSTABLE_CV),
    }


def _plan(estimate_s: float, min_seconds: float) -> tuple[int, int]:
    """(number, repeat): batch tiny runs so timer overhead stays small, and fill min_seconds."""
    number = max(1, int(0.002 / max(estimate_s, 1e-7)))
    repeat = max(10, int(min_seconds / max(estimate_s * number, 1e-7)))
    return number, min(repeat, 100000)


def time_artifact(artifact, inputs: dict, min_seconds: float, warmup: int = 3) -> dict:
    estimate = min(artifact.time(inputs, repeat=warmup, number=1))
    number, repeat = _plan(estimate, min_seconds)
    stats = latency_stats(artifact.time(inputs, repeat=repeat, number=number))
    stats["runs_per_sample"] = number
    return stats


def onnxruntime_session(onnx_path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def sample_seconds(run, min_seconds: float, min_runs: int = 10, max_runs: int = 100000) -> list[float]:
    """Seconds per call of `run()`, called until min_seconds have passed and at least min_runs times."""
    samples = []
    deadline = time.perf_counter() + min_seconds
    while len(samples) < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
        if len(samples) >= max_runs:
            break
    return samples


def time_onnxruntime(session, inputs: dict, min_seconds: float, warmup: int = 3) -> dict:
    for _ in range(warmup):
        session.run(None, inputs)
    return latency_stats(sample_seconds(lambda: session.run(None, inputs), min_seconds))


def measure_latency(artifact, onnx_path, inputs: dict, min_seconds: float, ort_threads: int, log=print) -> dict:
    """report.json["latency"]: edgecc where the artifact runs, ONNX Runtime beside it when that is here."""
    log(f"timing edgecc on {artifact.where} for at least {min_seconds:g} s ...")
    edgecc_stats = time_artifact(artifact, inputs, min_seconds)
    latency = {"edgecc": edgecc_stats, "where": artifact.where, "emulated": artifact.emulated, "warnings": []}
    if artifact.session is None:
        log(f"timing ONNX Runtime ({ort_threads} threads) on the same inputs ...")
        ort_stats = time_onnxruntime(onnxruntime_session(onnx_path, ort_threads), inputs, min_seconds)
        latency.update(onnxruntime=ort_stats, onnxruntime_threads=ort_threads,
                       ratio_vs_onnxruntime=edgecc_stats["median_ms"] / ort_stats["median_ms"])
    for name in ("edgecc", "onnxruntime"):
        if latency.get(name, {}).get("unstable"):
            latency["warnings"].append(f"{name} timings are unstable (CV {latency[name]['cv']:.2f}); is the machine busy?")
    return latency
