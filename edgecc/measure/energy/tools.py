"""Meters that parse tool output: NVIDIA NVML, Jetson `tegrastats`, Apple `powermetrics`.

The parsers take the tools' real text so recorded output can be replayed in tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from edgecc.measure.energy.base import EnergySample, Meter, PowerReading, now, summarise
from edgecc.measure.energy.sysfs import TOTAL_RAILS


class NvmlMeter(Meter):
    """NVIDIA GPUs through NVML (`nvidia-ml-py`): the total-energy counter (mJ) when the GPU has one,
    else power (mW) sampled and integrated. `nvml` is the pynvml module or anything with its API."""

    name = "nvml"

    def __init__(self, nvml=None, clock=now):
        if nvml is None:
            import pynvml as nvml
        self.nvml, self.clock = nvml, clock
        nvml.nvmlInit()
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        try:
            for h in self.handles:
                nvml.nvmlDeviceGetTotalEnergyConsumption(h)
            self.counter = True
        except Exception:  # noqa: BLE001 - older GPUs: NVML_ERROR_NOT_SUPPORTED
            self.counter = False

    def read(self) -> PowerReading:
        t = self.clock()
        if self.counter:
            return PowerReading(
                t,
                joules={
                    f"gpu{i}": self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3
                    for i, h in enumerate(self.handles)
                },
            )
        return PowerReading(
            t, watts={f"gpu{i}": self.nvml.nvmlDeviceGetPowerUsage(h) / 1e3 for i, h in enumerate(self.handles)}
        )


def try_nvml() -> NvmlMeter | None:
    try:
        meter = NvmlMeter()
        return meter if meter.handles else None
    except Exception:  # noqa: BLE001 - no pynvml, no driver, no GPU
        return None


# "VDD_IN 5000mW/5000mW" (JetPack 5+) or "POM_5V_IN 2796/2796" (JetPack 4): current/average milliwatts
_TEGRA_RAIL = re.compile(r"\b((?:VDD|POM|VIN)_[A-Z0-9_]+|[A-Z][A-Z0-9_]*(?= \d+mW))\s+(\d+)(?:mW)?/(\d+)(?:mW)?")


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Instantaneous watts per rail from one tegrastats line."""
    return {m.group(1): int(m.group(2)) / 1e3 for m in _TEGRA_RAIL.finditer(line)}


def tegrastats_readings(lines: list[str], interval_s: float) -> list[PowerReading]:
    readings = []
    for i, line in enumerate(text for text in lines if text.strip()):
        rails = parse_tegrastats_line(line)
        total = [r for r in TOTAL_RAILS if r in rails]
        counted = {r: rails[r] for r in total[:1]} if total else rails
        if counted:
            readings.append(PowerReading(i * interval_s, watts=counted))
    return readings


def sample_from_tegrastats(text: str, interval_s: float) -> EnergySample:
    return summarise("tegrastats", tegrastats_readings(text.splitlines(), interval_s))


_PM_HEADER = re.compile(r"\*\*\* Sampled system activity .*\(([\d.]+)\s*ms elapsed\)")
_PM_POWER = re.compile(r"^(CPU|GPU|ANE|Combined) Power[^:]*:\s*([\d.]+)\s*mW", re.M)


def parse_powermetrics(text: str) -> list[tuple[float, dict]]:
    """[(elapsed seconds, {rail: watts})] per powermetrics sample block."""
    blocks = []
    parts = _PM_HEADER.split(text)
    # split gives [before, elapsed1, body1, elapsed2, body2, ...]
    for elapsed, body in zip(parts[1::2], parts[2::2]):
        rails = {m.group(1): float(m.group(2)) / 1e3 for m in _PM_POWER.finditer(body)}
        if rails:
            blocks.append((float(elapsed) / 1e3, rails))
    return blocks


def sample_from_powermetrics(text: str) -> EnergySample:
    """Each block's power holds over its elapsed window; Combined is used when printed (it is the total)."""
    blocks = parse_powermetrics(text)
    if not blocks:
        raise ValueError("no powermetrics samples with power lines found")
    rail_joules: dict = {}
    seconds, peak = 0.0, 0.0
    for elapsed, rails in blocks:
        counted = {"Combined": rails["Combined"]} if "Combined" in rails else rails
        for rail, watts in counted.items():
            rail_joules[rail] = rail_joules.get(rail, 0.0) + watts * elapsed
        peak = max(peak, sum(counted.values()))
        seconds += elapsed
    joules = sum(rail_joules.values())
    return EnergySample(
        "powermetrics",
        seconds,
        joules,
        joules / seconds,
        peak,
        len(blocks),
        len(blocks) / seconds,
        sorted(rail_joules),
        rail_joules,
    )


class _ToolMeter(Meter):
    """Runs a sampling tool for the duration and parses its output at stop()."""

    command: list[str] = []

    def start(self) -> None:
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def _finish(self) -> str:
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=10)
        return out


class TegrastatsMeter(_ToolMeter):
    name = "tegrastats"

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.command = [shutil.which("tegrastats") or "tegrastats", "--interval", str(interval_ms)]

    def stop(self) -> EnergySample:
        return sample_from_tegrastats(self._finish(), self.interval_ms / 1e3)


class PowermetricsMeter(_ToolMeter):
    name = "powermetrics"

    def __init__(self, interval_ms: int = 100):
        self.command = ["powermetrics", "--samplers", "cpu_power,gpu_power,ane_power", "-i", str(interval_ms)]

    def stop(self) -> EnergySample:
        return sample_from_powermetrics(self._finish())
