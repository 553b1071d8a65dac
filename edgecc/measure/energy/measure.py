"""Joules per inference from a real meter: idle baseline, then sampling during the timed loop."""

from __future__ import annotations

import time

from edgecc.measure.energy.base import Meter


def energy_per_inference(meter: Meter, run_fn, n_runs: int, idle_seconds: float = 1.0) -> dict:
    """Run `run_fn()` `n_runs` times while `meter` samples; subtract the idle draw measured just before.

    Returns joules/inference above idle, average and peak watts, meter name, sample rate and rails,
    with `kind: "measured"`.
    """
    if n_runs < 1:
        raise ValueError("n_runs must be at least 1")
    meter.start()
    time.sleep(idle_seconds)
    idle = meter.stop()
    meter.start()
    started = time.perf_counter()
    for _ in range(n_runs):
        run_fn()
    elapsed = time.perf_counter() - started
    busy = meter.stop()
    return result_from_samples(idle, busy, n_runs, elapsed)


def result_from_samples(idle, busy, n_runs: int, elapsed_s: float | None = None) -> dict:
    seconds = busy.seconds or elapsed_s or 0.0
    net = busy.joules - idle.avg_watts * seconds
    return {
        "kind": "measured",
        "meter": busy.meter,
        "joules_per_inference": net / n_runs,
        "joules_per_inference_total": busy.joules / n_runs,
        "avg_watts": busy.avg_watts,
        "peak_watts": busy.peak_watts,
        "idle_watts": idle.avg_watts,
        "runs": n_runs,
        "seconds": seconds,
        "sample_rate_hz": busy.sample_rate_hz,
        "samples": busy.samples,
        "rails": busy.rails,
        "rail_joules": busy.rail_joules,
    }
