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


def time_onnxruntime(session, inputs: dict, min_seconds: float, warmup: int = 3) -> dict:
    for _ in range(warmup):
        session.run(None, inputs)
    samples = []
    deadline = time.perf_counter() + min_seconds
    while len(samples) < 10 or time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, inputs)
        samples.append(time.perf_counter() - start)
        if len(samples) >= 100000:
            break
    return latency_stats(samples)


def measure_extras(ctx) -> dict:
    """Energy, per-kernel profile and environment for the report; called by the pipeline's measure step."""
    if ctx.artifact is None or not ctx.latency.get("edgecc"):
        return {}
    from .environment import environment

    log = ctx.log
    extras = {"environment": environment() if ctx.artifact.session is None else None}
    extras["energy"] = measure_energy(ctx.artifact, ctx.sample_inputs, ctx.target,
                                      ctx.latency["edgecc"]["median_ms"] / 1e3, log)
    extras["profile"] = measure_profile(ctx, log)
    return extras


def measure_energy(artifact, inputs: dict, target, latency_s: float, log=print, seconds: float = 1.0) -> dict:
    """Measured on the machine that runs the model when it has a meter; else estimated and labelled so."""
    from .energy import detect_meter, energy_per_inference, estimate_energy
    from .energy.remote import remote_meter

    meter = remote_meter(artifact.session) if artifact.session is not None else detect_meter()
    if meter is None:
        result = estimate_energy(target, latency_s)
        result["why_estimated"] = "no power meter readable where the model ran"
        return result
    log(f"measuring energy with {meter.name} ...")
    runs = max(10, int(seconds / max(latency_s, 1e-6)))
    arguments = artifact._arguments(inputs)
    main = artifact.vm["main"]
    return energy_per_inference(meter, lambda: main(*arguments), runs, idle_seconds=min(1.0, seconds))


def measure_profile(ctx, log=print) -> dict | None:
    from .profile import profile_kernels

    module = ctx.scheduled
    if module is None:
        return None
    library = ctx.manifest["library"]
    try:
        if ctx.artifact.session is not None:
            lib = ctx.artifact.session.load_module(library)
        else:
            import tvm

            lib = tvm.runtime.load_module(str(ctx.stage_dir / library))
    except Exception as exc:  # the profile is extra information; the compile stands without it
        return {"kernels": [], "sum_ms": 0.0, "kernel_count": 0, "skipped": [], "error": str(exc)[:200]}
    precision = ctx.options.precision if ctx.options.precision in ctx.target.board.peak_gflops else "fp32"
    log("profiling kernels one by one ...")
    # Compared with the model timed in the same rounds, not with the latency measured earlier: on a
    # shared machine whose speed drifts, timings a few seconds apart differed by up to 2x.
    return profile_kernels(module, lib, ctx.artifact.device, ctx.target.peak_gflops(precision),
                           ctx.target.board.memory_bandwidth_gbs,
                           end_to_end=lambda runs: float(np.median(ctx.artifact.time(ctx.sample_inputs, repeat=runs))),
                           progress=None if ctx.options.quiet else log)
