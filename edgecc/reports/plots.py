"""The report's figures as base64 PNGs (matplotlib, the `plots` extra; Agg backend, no display).

Every figure is saved with its bounding box fitted to its labels, so nothing is cut off, and point
labels are numbers placed away from each other with the names in a key, so nothing overlaps.
"""

from __future__ import annotations

import base64
import io
import math

TOP_KERNELS = 15
_LABEL = 40  # characters of a kernel name shown on an axis


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _short(name: str) -> str:
    return name if len(name) <= _LABEL else name[: _LABEL - 1] + "…"


def _figure(width=8.0, height=4.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _spread_labels(points: list[tuple[float, float]], min_gap: float) -> list[tuple[float, float]]:
    """Label offsets (in points) so labels of nearby markers do not sit on each other: each label goes
    above its marker, and a label too close to an earlier one moves further up."""
    placed, offsets = [], []
    for x, y in points:
        dy = 6.0
        while any(abs(x - px) < min_gap and abs((y + dy) - (py + pdy)) < 11 for px, py, pdy in placed):
            dy += 11.0
        placed.append((x, y, dy))
        offsets.append((4.0, dy))
    return offsets


def tuning_curve(report: dict) -> str | None:
    curve = ((report.get("tuning") or {}).get("run") or {}).get("curve") or []
    if not curve:
        return None
    plt, fig, ax = _figure(8, 3.6)
    trials, ms = zip(*curve)
    ax.step(trials, ms, where="post", marker="o", markersize=3)
    ax.set_xlabel("trials")
    ax.set_ylabel("best estimated kernel time (ms)")
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def kernel_bars(report: dict) -> str | None:
    kernels = (report.get("profile") or {}).get("kernels") or []
    if not kernels:
        return None
    from matplotlib.patches import Patch

    top = kernels[:TOP_KERNELS][::-1]
    plt, fig, ax = _figure(8, 1.2 + 0.32 * len(top))
    colours = {"compute": "tab:red", "memory": "tab:blue", None: "tab:gray"}
    ax.barh(
        [f"{_short(k['name'])} x{k['calls']}" for k in top],
        [k["total_ms"] for k in top],
        color=[colours.get(k.get("bound")) for k in top],
        hatch=["//" if k.get("above_roof") else "" for k in top],
        edgecolor="white",
    )
    ax.set_xlabel("ms per inference")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color="tab:red", label="compute-bound"), Patch(color="tab:blue", label="memory-bound")]
    if any(k.get("above_roof") for k in top):
        handles.append(Patch(facecolor="tab:blue", hatch="//", edgecolor="white", label="above the roof (see table)"))
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    return _png(plt, fig)


def roofline(report: dict, numbered: int = 8) -> str | None:
    """Every kernel against the roof of each precision it uses; the `numbered` slowest carry their rank."""
    profile = report.get("profile") or {}
    kernels = [k for k in profile.get("kernels") or [] if k.get("arithmetic_intensity", 0) > 0]
    peaks = dict(profile.get("peaks_gflops") or {"fp32": profile.get("peak_gflops")})
    bandwidth = profile.get("memory_bandwidth_gbs")
    used = {k.get("precision", "fp32") for k in kernels} | {"fp32"}
    peaks = {p: v for p, v in peaks.items() if v and p in used}
    if not kernels or not peaks or not bandwidth:
        return None
    import numpy as np

    plt, fig, ax = _figure(8, 4.8)
    intensities = [k["arithmetic_intensity"] for k in kernels]
    low = min(intensities + [min(peaks.values()) / bandwidth]) / 4
    high = max(intensities + [max(peaks.values()) / bandwidth]) * 4
    x = np.logspace(math.log10(low), math.log10(high), 200)
    for (precision, peak), style in zip(sorted(peaks.items(), key=lambda kv: kv[1]), ("k-", "k--", "k:", "k-.")):
        ax.loglog(
            x,
            np.minimum(peak, x * bandwidth),
            style,
            linewidth=1.2,
            label=f"{precision} roof: {peak:g} GFLOP/s, {bandwidth:g} GB/s",
        )
    colours = ["tab:red" if k.get("bound") == "compute" else "tab:blue" for k in kernels]
    achieved = [max(k["achieved_gflops"], 1e-6) for k in kernels]
    ax.scatter(
        intensities,
        achieved,
        s=[20 + 300 * k.get("share", 0) for k in kernels],
        c=colours,
        alpha=0.6,
        edgecolors="black",
        linewidths=0.4,
    )
    ranked = sorted(range(len(kernels)), key=lambda i: kernels[i]["total_ms"], reverse=True)[:numbered]
    points = [(math.log10(intensities[i]), math.log10(achieved[i])) for i in ranked]
    for rank, (i, offset) in enumerate(zip(ranked, _spread_labels(points, 0.12)), 1):
        ax.annotate(
            str(rank),
            (intensities[i], achieved[i]),
            xytext=offset,
            textcoords="offset points",
            fontsize=8,
            fontweight="bold",
            annotation_clip=True,
        )
    ax.set_xlim(low, high)
    top = max(max(peaks.values()), max(achieved)) * 3
    ax.set_ylim(min(min(achieved), low * bandwidth) / 2, top)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return _png(plt, fig)


def roofline_key(report: dict, numbered: int = 8) -> str:
    kernels = [k for k in (report.get("profile") or {}).get("kernels") or [] if k.get("arithmetic_intensity", 0) > 0]
    ranked = sorted(kernels, key=lambda k: k["total_ms"], reverse=True)[:numbered]
    return (
        "Numbers: "
        + "; ".join(f"{rank} `{k['name']}`" for rank, k in enumerate(ranked, 1))
        + ". Red: compute-bound, blue: memory-bound; marker area: share of kernel time."
    )


def pareto(points) -> str | None:
    """Latency vs library size of comparable builds (edgecc.reports.siblings.Build, this build first),
    coloured by accuracy drop. The front joins only builds timed under this build's load that no other
    such build beats in both latency and size; builds timed under another load are hollow and off it."""
    from edgecc.reports.siblings import PLANE, WITH_ACCURACY, pareto_front, same_load

    if len(points) < 2:
        return None
    plt, fig, ax = _figure(8, 4.2)
    peers, other_load = same_load(points)
    drops = [p.accuracy_drop for p in points]
    colour = {"cmap": "viridis_r", "vmin": min(drops), "vmax": max(drops)} if any(drops) else {"color": "tab:blue"}
    style = {"s": 70, "edgecolors": "black", "linewidths": 0.4}
    scatter = ax.scatter(
        [p.median_ms for p in peers],
        [p.library_mb for p in peers],
        **({"c": [p.accuracy_drop for p in peers]} if any(drops) else {}),
        **colour,
        **style,
        label=f"timed {peers[0].load}",
    )
    if other_load:
        shade = plt.get_cmap("viridis_r") if any(drops) else None
        ax.scatter(
            [p.median_ms for p in other_load],
            [p.library_mb for p in other_load],
            s=70,
            facecolors="none",
            edgecolors=[
                shade((p.accuracy_drop - min(drops)) / ((max(drops) - min(drops)) or 1)) if shade else "tab:blue"
                for p in other_load
            ],
            linewidths=1.5,
            label="timed under another load (" + ", ".join(sorted({p.load for p in other_load})) + "): not compared",
        )
    if any(drops):
        fig.colorbar(scatter, ax=ax, label="accuracy drop")
    coords = [(math.log10(max(p.median_ms, 1e-9)), math.log10(max(p.library_mb, 1e-9))) for p in points]
    for p, offset in zip(points, _spread_labels(coords, 0.08)):
        ax.annotate(_short(p.name), (p.median_ms, p.library_mb), xytext=offset, textcoords="offset points", fontsize=8)
    front = pareto_front(peers, PLANE)
    ax.plot([p.median_ms for p in front], [p.library_mb for p in front], "r--", alpha=0.5, label="Pareto front")
    # slower or larger, but more accurate
    traded = [p for p in pareto_front(peers, WITH_ACCURACY) if all(p is not q for q in front)]
    if traded:
        ax.scatter(
            [p.median_ms for p in traded],
            [p.library_mb for p in traded],
            s=180,
            facecolors="none",
            edgecolors="red",
            linewidths=1.0,
            label="Pareto-best only counting accuracy",
        )
    ax.margins(x=0.25, y=0.25)
    ax.set_xlabel("median latency (ms)")
    ax.set_ylabel("library size (MB)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(plt, fig)
