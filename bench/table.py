"""The comparison table: rows, ratios within a precision group, the CPU header (pure functions)."""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass, replace

import numpy as np

# A peer is flagged (and not ranked) when its output disagrees with ONNX Runtime's on the same
# inputs. FP32: max |out - ref| / max |ref| above MAX_REL_FP32 (room for reassociation and
# polynomial exp/erf). Reduced precisions round by design, and their worst element says little
# (ONNX Runtime's own INT8 MiniLM reaches 0.16), so they are judged by the cosine of the whole
# output with the reference, as the accuracy figures of quantization papers are.
MAX_REL_FP32 = 1e-3
MIN_COSINE_REDUCED = 0.99
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
LOADED = 0.10  # share of the CPUs other processes used during the run above which the table says so


@dataclass(frozen=True)
class Row:
    model: str
    runtime: str
    precision: str  # the group the ratio is taken in: fp32, int8, bf16, ...
    stats: dict | None = None  # edgecc.measure.latency.latency_stats, None when not timed
    error: float | None = None  # max relative error vs ONNX Runtime (plain) on the same inputs
    cosine: float | None = None  # cosine of the flattened output with ONNX Runtime's
    reason: str = ""  # why it was not timed (build failed), or why it is not ranked (wrong output)
    build_s: float | None = None
    ratio: float | None = None  # median / fastest median in the same (model, precision) group

    @property
    def wrong(self) -> bool:
        if self.error is None:
            return False  # not checked (no reference output)
        if self.precision == "fp32":
            return not self.error <= MAX_REL_FP32
        return not (self.cosine is not None and self.cosine >= MIN_COSINE_REDUCED)

    @property
    def ranked(self) -> bool:
        return self.stats is not None and not self.wrong


def agreement(actual, reference) -> tuple[float, float]:
    """(max |a - r| / max |r|, cosine of a and r flattened); (inf, 0) for a wrong shape or non-finite values."""
    a, r = np.asarray(actual, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape or not np.all(np.isfinite(a)):
        return float("inf"), 0.0
    error = float(np.max(np.abs(a - r)) / max(float(np.max(np.abs(r))), 1e-30)) if r.size else 0.0
    norms = float(np.linalg.norm(a) * np.linalg.norm(r))
    return error, (float(np.dot(a.ravel(), r.ravel()) / norms) if norms > 0 else float(error == 0.0))


def with_ratios(rows: list[Row]) -> list[Row]:
    """Each timed, correct row's median over the fastest correct median of its model and precision."""
    fastest: dict[tuple[str, str], float] = {}
    for row in rows:
        if row.ranked:
            key = (row.model, row.precision)
            fastest[key] = min(fastest.get(key, float("inf")), row.stats["median_ms"])
    return [
        replace(row, ratio=row.stats["median_ms"] / fastest[(row.model, row.precision)]) if row.ranked else row
        for row in rows
    ]


@dataclass(frozen=True)
class Machine:
    cpu: str  # /proc/cpuinfo model name
    llvm_cpu: str  # LLVM's name for it (what edgecc and IREE compile for)
    flags: tuple[str, ...]  # those of CPU_FLAGS the CPU has
    cores: int


def machine_from_cpuinfo(cpuinfo: str, llvm_cpu: str) -> Machine:
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    present = set(flags.group(1).split()) if flags else set()
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.M))
    return Machine(
        model.group(1).strip() if model else "unknown CPU", llvm_cpu, tuple(f for f in CPU_FLAGS if f in present), cores
    )


@dataclass(frozen=True)
class CpuSnapshot:
    wall_s: float
    busy_s: float  # all CPUs, from /proc/stat (steal included: a VM's neighbours count as load)
    own_s: float  # this process and its finished children (iree-compile, compile workers)


def busy_seconds(proc_stat: str, ticks_per_s: float) -> float:
    """Busy CPU seconds since boot from /proc/stat's first line (user nice system idle iowait irq softirq steal)."""
    fields = [float(v) for v in proc_stat.splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields + [0.0] * (8 - len(fields))
    return (user + nice + system + irq + softirq + steal) / ticks_per_s


def cpu_snapshot() -> CpuSnapshot:
    with open("/proc/stat") as handle:
        busy = busy_seconds(handle.read(), os.sysconf("SC_CLK_TCK"))
    own = sum(
        resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return CpuSnapshot(time.monotonic(), busy, own)


def others_cpu_share(start: CpuSnapshot, end: CpuSnapshot, cores: int) -> float:
    """Share of all CPUs that other processes kept busy between two snapshots (0: a quiet machine)."""
    wall = max(end.wall_s - start.wall_s, 1e-9)
    others = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
    return min(1.0, max(0.0, others / (wall * max(cores, 1))))


def header(
    machine: Machine,
    *,
    threads: int,
    batch: int,
    seq_len: int,
    when: str,
    versions: dict[str, str],
    others_cpu: float | None = None,
) -> str:
    flags = ", ".join(machine.flags) or "none of " + ", ".join(CPU_FLAGS)
    lines = [
        f"Measured {when} on **{machine.cpu}** (LLVM `{machine.llvm_cpu}`; {flags}; "
        f"{machine.cores} logical CPUs), "
        f"{threads} threads for every runtime, batch {batch}, seq len {seq_len} (text models; images at "
        f"their native size)."
    ]
    if others_cpu is not None:
        lines.append(f"Other processes kept {others_cpu:.0%} of the CPUs busy during the run.")
    lines.append("Versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()) + ".")
    lines.append(
        "Interleaved rounds (every runtime once per round, order rotated); ratio = median / fastest "
        "median at the same precision (1.00x: the fastest); error = max |out - ONNX Runtime| / "
        "max |ONNX Runtime| and cos = cosine with ONNX Runtime's output, on the same inputs. Flagged and "
        f"not ranked: an FP32 runtime with error above {MAX_REL_FP32:g}, a reduced-precision one with "
        f"cos below {MIN_COSINE_REDUCED:g}."
    )
    return "\n".join(lines)


def render(rows: list[Row]) -> str:
    lines = [
        "| model | runtime | precision | median ms | p10-p90 ms | CV | runs | vs fastest | error | cos | build s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in with_ratios(rows):
        build = f"{row.build_s:.1f}" if row.build_s is not None else ""
        error = f"{row.error:.1e}" if row.error is not None else ""
        cosine = f"{row.cosine:.5f}" if row.cosine is not None else ""
        if row.stats is None:
            lines.append(
                f"| {row.model} | {row.runtime} | {row.precision} | — | — | — | — | "
                f"not run: {row.reason} | | | {build} |"
            )
            continue
        s = row.stats
        ratio = f"**{row.ratio:.2f}x**" if row.ratio == 1.0 else (f"{row.ratio:.2f}x" if row.ratio else "")
        if row.wrong:
            ratio = "not ranked: wrong output" + (f" ({row.reason})" if row.reason else "")
        lines.append(
            f"| {row.model} | {row.runtime} | {row.precision} | {s['median_ms']:.2f} | "
            f"{s['p10_ms']:.2f}-{s['p90_ms']:.2f} | {s['cv']:.2f} | {s['runs']} | {ratio} | {error} | "
            f"{cosine} | {build} |"
        )
    return "\n".join(lines)


def document(head: str, rows: list[Row], notes: list[str]) -> str:
    text = head + "\n\n" + render(rows) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text
