"""Pick the meter this machine (or board) has, best first."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgecc.measure.energy.base import Meter
from edgecc.measure.energy.sysfs import AmdEnergyMeter, Ina3221Meter, RaplMeter


def detect_meter(root: str | Path = "/") -> Meter | None:
    """A ready Meter, or None when the machine has no readable power meter.

    `root` is the filesystem root to look under, so a recorded sysfs tree can stand in for a board.
    Tools (NVML, tegrastats, powermetrics) are only considered on the real root.
    """
    for cls in (Ina3221Meter, RaplMeter, AmdEnergyMeter):  # board input rail beats CPU-only counters
        meter = cls(root)
        if meter.available():
            return meter
    if Path(root).resolve() != Path("/"):
        return None
    from edgecc.measure.energy.tools import PowermetricsMeter, TegrastatsMeter, try_nvml

    nvml = try_nvml()
    if nvml is not None:
        return nvml
    if shutil.which("tegrastats"):
        return TegrastatsMeter()
    if shutil.which("powermetrics") and os.geteuid() == 0:
        return PowermetricsMeter()
    return None
