"""Energy per inference: measured by a meter when the machine has one, else estimated from the target file.

Every result carries `kind: "measured"`, `"estimated"` (from the target file's power figures, with
the figures named) or `"not measured"` (with the reason), so they are never confused.
"""

from edgecc.measure.energy.base import EnergySample, Meter, PowerReading
from edgecc.measure.energy.detect import detect_meter
from edgecc.measure.energy.estimate import estimate_energy
from edgecc.measure.energy.measure import energy_per_inference

__all__ = [
    "EnergySample",
    "Meter",
    "PowerReading",
    "detect_meter",
    "estimate_energy",
    "energy_per_inference",
    "measure_energy",
    "not_measured",
]


def not_measured(why: str) -> dict:
    return {"kind": "not measured", "why": why}


def measure_energy(artifact, inputs: dict, target, latency_s: float, log=print, seconds: float = 1.0) -> dict:
    """Measured on the machine that runs the model when it has a meter; else estimated and labelled so."""
    from edgecc.measure.energy.remote import remote_meter

    if artifact.emulated:
        return not_measured("the board is emulated (QEMU): its timings and power say nothing about the real board")
    meter = remote_meter(artifact.session) if artifact.session is not None else detect_meter()
    if meter is None:
        if not target.board.has_power_figures:
            return not_measured(
                f"no power meter readable where the model ran, and target '{target.name}' has no "
                "power figures (board.tdp_watts, board.idle_watts) to estimate from"
            )
        result = estimate_energy(target, latency_s)
        result["why_estimated"] = "no power meter readable where the model ran"
        return result
    log(f"measuring energy with {meter.name} ...")
    runs = max(10, int(seconds / max(latency_s, 1e-6)))
    arguments = artifact.arguments(inputs)
    main = artifact.vm["main"]
    return energy_per_inference(meter, lambda: main(*arguments), runs, idle_seconds=min(1.0, seconds))
