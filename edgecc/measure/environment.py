"""What affects a measurement, read where readable: CPU governor and frequency, thermal state,
Jetson power mode, load on the machine. `root` lets tests point at a recorded tree."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_frequency(root: Path) -> dict:
    cpus = {}
    for cpufreq in sorted(Path(root).glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq")):
        khz = _read(cpufreq / "scaling_cur_freq")
        cpus[cpufreq.parent.name] = {
            "governor": _read(cpufreq / "scaling_governor"),
            "cur_mhz": int(khz) / 1e3 if khz and khz.isdigit() else None,
            "max_mhz": (int(v) / 1e3 if (v := _read(cpufreq / "scaling_max_freq")) and v.isdigit() else None),
        }
    return cpus


def thermal_zones(root: Path) -> dict:
    zones = {}
    for zone in sorted(Path(root).glob("sys/class/thermal/thermal_zone*")):
        temp = _read(zone / "temp")
        if temp and temp.lstrip("-").isdigit():
            zones[_read(zone / "type") or zone.name] = int(temp) / 1e3
    return zones


def nvpmodel_mode(root: Path) -> str | None:
    """Jetson power mode: `nvpmodel -q` on the real board, else the recorded status file."""
    if str(root) == "/" and shutil.which("nvpmodel"):
        try:
            out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5).stdout
            return " ".join(out.split()) or None
        except (OSError, subprocess.SubprocessError):
            return None
    return _read(Path(root) / "var/lib/nvpmodel/status")


def load_average(root: Path) -> list[float] | None:
    text = _read(Path(root) / "proc/loadavg")
    return [float(v) for v in text.split()[:3]] if text else None


def environment(root: str | Path = "/") -> dict:
    root = Path(root)
    cpus = cpu_frequency(root)
    governors = sorted({c["governor"] for c in cpus.values() if c["governor"]})
    load = load_average(root)
    cores = os.cpu_count() or 1
    env = {
        "machine": platform.machine(),
        "system": platform.platform(),
        "processor": _cpu_model(root),
        "cpu_count": cores,
        "governors": governors,
        "cpus": cpus,
        "thermal_c": thermal_zones(root),
        "nvpmodel": nvpmodel_mode(root),
        "load_average": load,
        "warnings": [],
    }
    if load and load[0] > 0.5 * cores:
        env["warnings"].append(
            f"machine is loaded (1-min load {load[0]:.2f} on {cores} cores); timings may be "
            "slower and noisier than on an idle machine"
        )
    if governors and governors != ["performance"]:
        env["warnings"].append(f"CPU governor is {', '.join(governors)}, not performance; frequency may vary")
    hot = {k: v for k, v in env["thermal_c"].items() if v >= 80}
    if hot:
        env["warnings"].append(f"hot thermal zones (may throttle): {hot}")
    return env


def _cpu_model(root: Path) -> str | None:
    text = _read(Path(root) / "proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def stability_warning(stats: dict, name: str = "edgecc", limit: float = 0.10) -> str | None:
    """A warning when the coefficient of variation of the timed runs is above `limit`."""
    cv = stats.get("cv")
    if cv is not None and cv > limit:
        return f"{name} timings are unstable (CV {cv:.2f} > {limit:.2f}); close other work or pin the CPU frequency"
    return None
