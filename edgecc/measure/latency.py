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


LATENCY_ROUNDS = 8


def ratio_summary(first: list[float], second: list[float], ratios: list[float]) -> dict:
    """second / first: the ratio of the two medians, both over the same alternating rounds, and the
    interquartile range of the rounds' own ratios (how far one round's comparison can be trusted)."""
    return {
        "ratio": float(np.median(second) / np.median(first)),
        "spread": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))],
    }


def compare_artifacts_here(first, second, inputs: dict, min_seconds: float, rounds: int = LATENCY_ROUNDS) -> dict:
    """Two loaded artifacts timed in alternating rounds (A, B, A, B, ...) on the same inputs, in this
    process (so the same TVM thread pool): medians, spread and the ratio B/A per round."""
    estimates = [min(a.time(inputs, repeat=3, number=1)) for a in (first, second)]
    number, _ = _plan(min(estimates), min_seconds)
    share = min_seconds / rounds
    repeats = [max(2, int(share / max(e * number, 1e-7))) for e in estimates]
    samples, ratios = ([], []), []
    for _ in range(rounds):
        medians = []
        for index, artifact in enumerate((first, second)):
            taken = artifact.time(inputs, repeat=repeats[index], number=number)
            samples[index].extend(taken)
            medians.append(float(np.median(taken)))
        ratios.append(medians[1] / medians[0])
    return {
        "a": latency_stats(samples[0]),
        "b": latency_stats(samples[1]),
        "rounds": rounds,
        "runs_per_sample": number,
        **ratio_summary(samples[0], samples[1], ratios),
    }


def measure_side_by_side(artifact, session, inputs: dict, min_seconds: float, rounds: int = LATENCY_ROUNDS) -> dict:
    """edgecc and ONNX Runtime timed in alternating rounds (edgecc, ORT, edgecc, ...) so both see the
    same machine: on a shared machine the speed drifts between seconds, and two timings taken one after
    the other differed by up to 2x. The ratio is edgecc's median over ONNX Runtime's."""
    estimate = min(artifact.time(inputs, repeat=3, number=1))
    for _ in range(3):
        session.run(None, inputs)
    number, _ = _plan(estimate, min_seconds)
    share = min_seconds / rounds  # seconds per runtime per round
    repeat = max(2, int(share / max(estimate * number, 1e-7)))
    edgecc_samples, ort_samples, ratios = [], [], []
    for _ in range(rounds):
        ours = artifact.time(inputs, repeat=repeat, number=number)
        theirs = sample_seconds(lambda: session.run(None, inputs), share, min_runs=2)
        edgecc_samples += ours
        ort_samples += theirs
        ratios.append(float(np.median(ours) / np.median(theirs)))
    edgecc_stats = latency_stats(edgecc_samples)
    edgecc_stats["runs_per_sample"] = number
    summary = ratio_summary(ort_samples, edgecc_samples, ratios)
    return {
        "edgecc": edgecc_stats,
        "onnxruntime": latency_stats(ort_samples),
        "interleaved": True,
        "rounds": rounds,
        "ratio_vs_onnxruntime": summary["ratio"],
        "ratio_spread": summary["spread"],
    }


def measure_latency(artifact, onnx_path, inputs: dict, min_seconds: float, ort_threads: int, log=print) -> dict:
    """report.json["latency"]: edgecc where the artifact runs; ONNX Runtime beside it, in interleaved
    rounds, when the artifact runs here."""
    latency = {"where": artifact.where, "emulated": artifact.emulated, "warnings": []}
    if artifact.session is None:
        log(
            f"timing edgecc and ONNX Runtime ({ort_threads} threads) in alternating rounds for at least "
            f"{2 * min_seconds:g} s ..."
        )
        latency.update(
            measure_side_by_side(artifact, onnxruntime_session(onnx_path, ort_threads), inputs, min_seconds),
            onnxruntime_threads=ort_threads,
        )
    else:
        log(f"timing edgecc on {artifact.where} for at least {min_seconds:g} s ...")
        latency["edgecc"] = time_artifact(artifact, inputs, min_seconds)
    for name in ("edgecc", "onnxruntime"):
        if latency.get(name, {}).get("unstable"):
            latency["warnings"].append(
                f"{name} timings are unstable (CV {latency[name]['cv']:.2f}); is the machine busy?"
            )
    return latency
