"""Where a kernel sits against the machine's compute peak and memory bandwidth, and why a figure
that looks impossible (above the roof) is or is not."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Machine:
    """The roof: compute peaks by precision class (GFLOP/s), DRAM bandwidth (GB/s) and the on-chip
    cache a kernel's data can sit in between kernels (bytes, None when unknown)."""

    peaks: dict = field(default_factory=dict)
    bandwidth_gbs: float | None = None
    cache_bytes: int | None = None

    def peak(self, precision: str) -> float | None:
        return self.peaks.get(precision) or self.peaks.get("fp32")


def machine_from_board(board) -> Machine:
    return Machine(dict(board.peak_gflops), board.memory_bandwidth_gbs, getattr(board, "cache_bytes", None))


def _mb(value: float) -> str:
    return f"{value / 1e6:.3g} MB"


def above_roof_reasons(
    bytes_moved: float, achieved_gflops: float, achieved_gbs: float, peak: float | None, machine: Machine
) -> list[str]:
    """One line per figure above its roof, saying why (or that it should not be)."""
    reasons = []
    bandwidth = machine.bandwidth_gbs
    if bandwidth and achieved_gbs > bandwidth:
        if machine.cache_bytes and bytes_moved <= machine.cache_bytes:
            reasons.append(
                f"cache-resident: its {_mb(bytes_moved)} fit in the {_mb(machine.cache_bytes)} of "
                f"on-chip cache, so it moved {achieved_gbs:.0f} GB/s, above DRAM's {bandwidth:.0f} GB/s"
            )
        elif machine.cache_bytes:
            reasons.append(
                f"above DRAM bandwidth ({achieved_gbs:.0f} of {bandwidth:.0f} GB/s) with "
                f"{_mb(bytes_moved)}, more than the {_mb(machine.cache_bytes)} of cache: the byte count "
                "or the timing is wrong"
            )
        else:
            reasons.append(
                f"above the target's bandwidth figure ({achieved_gbs:.0f} of {bandwidth:.0f} GB/s): "
                f"its {_mb(bytes_moved)} came at least partly from cache (cache size unknown)"
            )
    if peak and achieved_gflops > peak:
        reasons.append(
            f"above the compute peak ({achieved_gflops:.0f} of {peak:.0f} GFLOP/s): the operation "
            "count or the peak is wrong"
        )
    return reasons


def roofline(
    flops: float,
    bytes_moved: float,
    seconds: float,
    peak_gflops: float | None,
    bandwidth_gbs: float | None,
    machine: Machine | None = None,
) -> dict:
    """Where a kernel sits against the compute peak and memory bandwidth; `above_roof` says why any
    figure exceeds 100 %."""
    machine = machine or Machine({"fp32": peak_gflops} if peak_gflops else {}, bandwidth_gbs)
    achieved_gflops = flops / seconds / 1e9 if seconds > 0 else 0.0
    achieved_gbs = bytes_moved / seconds / 1e9 if seconds > 0 else 0.0
    intensity = flops / bytes_moved if bytes_moved else 0.0
    out = {"arithmetic_intensity": intensity, "achieved_gflops": achieved_gflops, "achieved_gbs": achieved_gbs}
    if peak_gflops and bandwidth_gbs:
        ridge = peak_gflops / bandwidth_gbs
        attainable = min(peak_gflops, intensity * bandwidth_gbs)
        out.update(
            {
                "ridge_point": ridge,
                "bound": "compute" if intensity >= ridge else "memory",
                "attainable_gflops": attainable,
                "pct_of_peak_compute": 100.0 * achieved_gflops / peak_gflops,
                "pct_of_peak_bandwidth": 100.0 * achieved_gbs / bandwidth_gbs,
                "pct_of_roofline": 100.0 * achieved_gflops / attainable
                if attainable > 0
                else 100.0 * achieved_gbs / bandwidth_gbs,
            }
        )
        reasons = above_roof_reasons(bytes_moved, achieved_gflops, achieved_gbs, peak_gflops, machine)
        if reasons:
            out["above_roof"] = reasons
    return out
