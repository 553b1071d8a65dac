"""The `host` target's facts, read, derived or measured on this machine, never assumed.

- LLVM CPU name and core count: read; the name's features corrected to what the CPU's flags say
  (edgecc/targets/cpu_flags.py). EDGECC_HOST_CPU=<LLVM CPU name> pins the name and its features
  instead (an older class compiled and run here); the machine's facts and the report say so.
- Compute peaks per precision: derived, operations per cycle per core from the microarchitecture
  table (edgecc/targets/microarch.py) x cores x clock. The clock: the sysfs maximum frequency
  where the kernel exposes it, else measured (a VM's /proc/cpuinfo shows the nominal TSC rate,
  not the boost clock the cores run at), else /proc/cpuinfo; `board.sources` says which.
- Memory bandwidth: measured by a short copy probe, cached per machine (edgecc/targets/probe.py).
- Caches: read from sysfs.
- Power: no figures. A meter is used when one is readable; without one the energy is "not
  measured" rather than computed from a made-up TDP.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from pathlib import Path

from edgecc.targets import Target


def detect_host(target: Target) -> Target:
    """Fill in this machine's CPU name, core count, peaks, bandwidth and caches for the `host` target."""

    from edgecc.targets.cpu_flags import PIN_VARIABLE, host_cpu
    from edgecc.targets.probe import cache_bytes, host_measurements
    from edgecc.threads import host_threads

    chosen = host_cpu()
    cpu = chosen.name
    cores = host_threads()
    model = _cpu_model_name()
    caches = cache_bytes()
    measured = host_measurements(model, cpu, cores, caches)
    tvm_target = dict(target.tvm_target, mcpu=cpu, **{"num-cores": cores})
    if chosen.corrections:  # the CPU's flags and LLVM's name for it disagree (a VM's model number, say)
        tvm_target["mattr"] = [*tvm_target.get("mattr", []), *chosen.corrections]
    features = {c[1:] for c in chosen.corrections if c.startswith("+")}
    peaks, peak_source, clock_source = host_peaks(cpu, model, cores, measured, features)
    bandwidth = round(measured.bandwidth_gbs, 1) if measured.bandwidth_gbs else target.board.memory_bandwidth_gbs
    sources = {
        "peak_gflops": peak_source,
        "clock": clock_source,
        "memory_bandwidth_gbs": measured.bandwidth_method
        + (
            f"; cached in {measured.cache_file} ({measured.measured_at}, 1-min load {measured.load_average:.2f})"
            if measured.cache_file and measured.load_average is not None
            else ""
        ),
        "caches": ", ".join(f"{level} {size >> 10} KiB" for level, size in sorted(caches.items())) + " (sysfs)"
        if caches
        else "not readable",
        "power": "no power figures for this machine: a power meter is used when readable, else energy is not measured",
    }
    if not measured.bandwidth_gbs:
        sources["memory_bandwidth_gbs"] += f"; the target file's {bandwidth:g} GB/s is used instead"
    if chosen.pinned:
        sources["cpu"] = (
            f"pinned by {PIN_VARIABLE}={cpu}: compiled, and precisions and kernels chosen, for LLVM's {cpu} and "
            f"its feature list, run on this machine's {model}; the peaks are {cpu}'s arithmetic at this clock"
        )
    board = replace(
        target.board,
        cores=cores,
        peak_gflops=peaks,
        soc=f"{model}, pinned to {cpu} ({PIN_VARIABLE})" if chosen.pinned else model,
        memory_bandwidth_gbs=bandwidth,
        cache_bytes=sum(caches.get(level, 0) for level in ("L2", "L3")) or None,
        sources=sources,
        tdp_watts=None,
        idle_watts=None,
    )
    return replace(target, tvm_target=tvm_target, board=board, arch=platform.machine())


def host_peaks(cpu: str, model: str, cores: int, measured, features=()) -> tuple[dict, str, str]:
    """({precision: GFLOP/s}, how the peak was derived, where the clock came from)."""
    from edgecc.targets.microarch import core_arithmetic

    ghz, clock_source = host_clock(measured)
    arithmetic = core_arithmetic(cpu, model, features)
    if arithmetic is None:
        per_cycle = {"fp32": _fp32_per_cycle_from_flags()}
        how = (
            f"'{cpu}' is not in the microarchitecture table: {per_cycle['fp32']} FLOP/cycle/core guessed from "
            "the CPU flags (2 FMA pipes of the widest vector unit)"
        )
    else:
        per_cycle = arithmetic.per_cycle()
        others = ", ".join(f"{p} {n}" for p, n in per_cycle.items() if p != "fp32")
        how = (
            f"{cpu}: {arithmetic.datapath} x 2 = {arithmetic.fp32} fp32 FLOP/cycle/core"
            + (f"; {others}" if others else "")
            + f" ({arithmetic.source})"
        )
    fma = getattr(measured, "fma_gflops", None)
    if fma and fma / per_cycle["fp32"] < ghz:  # the core clocks lower under FMAs than the clock source says
        ghz = fma / per_cycle["fp32"]
        clock_source += f"; {ghz:.2f} GHz under FMAs (one core's measured {fma:.1f} GFLOP/s over its FLOP/cycle)"
    peaks = {precision: round(n * cores * ghz, 1) for precision, n in per_cycle.items()}
    return peaks, f"{how} x {cores} cores x {ghz:.2f} GHz", clock_source


def host_clock(measured) -> tuple[float, str]:
    sysfs = _sysfs_max_ghz()
    nominal = _cpuinfo_ghz()
    if sysfs:
        return sysfs, f"{sysfs:.2f} GHz: sysfs cpuinfo_max_freq (the highest boost clock)"
    if measured.clock_ghz:
        said = f"; /proc/cpuinfo says {nominal:.2f} GHz (the nominal rate)" if nominal else ""
        return measured.clock_ghz, f"{measured.clock_ghz:.2f} GHz {measured.clock_method} (no sysfs cpufreq{said})"
    if nominal:
        return nominal, f"{nominal:.2f} GHz: /proc/cpuinfo 'cpu MHz' (no sysfs cpufreq, clock not measured)"
    return 2.0, "2.00 GHz assumed: neither sysfs, /proc/cpuinfo nor a measurement gave the clock"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpuinfo_ghz() -> float | None:
    for line in _cpuinfo().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":", 1)[1]) / 1000.0
    return None


def _sysfs_max_ghz(root: str = "/") -> float | None:
    values = []
    for path in Path(root).glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            values.append(int(path.read_text().strip()))
        except (OSError, ValueError):
            continue
    return max(values) / 1e6 if values else None


def _fp32_per_cycle_from_flags() -> int:
    flags = next((ln for ln in _cpuinfo().splitlines() if ln.startswith(("flags", "Features"))), "")
    if "avx512f" in flags:
        return 64
    if "fma" in flags and "avx2" in flags:
        return 32
    return 16 if "asimd" in flags else 8
