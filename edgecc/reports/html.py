"""report.html: the report with plots (matplotlib, Agg backend, PNGs inlined as base64 so the file stands alone).

Plots: tuning curve (best estimated latency vs trials), per-kernel time bars, roofline with every kernel,
and a latency/size/accuracy Pareto chart across sibling artifact folders (other compiles of the same model).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

TOP_KERNELS = 15


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(8, 4.5), dpi=100)


def _png(plt, fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def tuning_curve_png(report: dict) -> str | None:
    curve = ((report.get("tuning") or {}).get("run") or {}).get("curve") or []
    if len(curve) < 1:
        return None
    plt, fig, ax = _figure()
    trials, ms = zip(*curve)
    ax.step(trials, ms, where="post", marker="o")
    ax.set_xlabel("trials")
    ax.set_ylabel("best estimated kernel time (ms)")
    ax.set_title("Tuning curve")
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def kernel_bars_png(report: dict) -> str | None:
    kernels = (report.get("profile") or {}).get("kernels") or []
    if not kernels:
        return None
    top = kernels[:TOP_KERNELS][::-1]
    plt, fig, ax = _figure()
    colours = ["tab:red" if k.get("bound") == "compute" else "tab:blue" for k in top]
    ax.barh([f"{k['name']} x{k['calls']}" for k in top], [k["total_ms"] for k in top], color=colours)
    ax.set_xlabel("ms per inference (red: compute-bound, blue: memory-bound)")
    ax.set_title(f"Top {len(top)} kernels")
    return _png(plt, fig)


def roofline_png(report: dict) -> str | None:
    profile = report.get("profile") or {}
    kernels = [k for k in profile.get("kernels") or [] if k.get("arithmetic_intensity", 0) > 0]
    peak, bandwidth = profile.get("peak_gflops"), profile.get("memory_bandwidth_gbs")
    if not kernels or not peak or not bandwidth:
        return None
    import numpy as np

    plt, fig, ax = _figure()
    intensities = [k["arithmetic_intensity"] for k in kernels]
    x = np.logspace(np.log10(min(intensities + [peak / bandwidth]) / 4), np.log10(max(intensities) * 4), 200)
    ax.loglog(x, np.minimum(peak, x * bandwidth), "k-", label=f"roof: {peak:g} GFLOP/s, {bandwidth:g} GB/s")
    ax.scatter(intensities, [max(k["achieved_gflops"], 1e-6) for k in kernels],
               s=[20 + 200 * k.get("share", 0) for k in kernels], alpha=0.7, label="kernels (size: time share)")
    for k in kernels[:5]:
        ax.annotate(k["name"], (k["arithmetic_intensity"], max(k["achieved_gflops"], 1e-6)), fontsize=7)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("Roofline")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _png(plt, fig)


def sibling_reports(folder: Path, report: dict) -> list[tuple[str, dict]]:
    """Reports of other compiles of the same model next to this folder (variants for the Pareto chart)."""
    found = []
    parent = Path(folder).resolve().parent
    for candidate in sorted(parent.glob("*/report.json")):
        try:
            other = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if other.get("model", {}).get("name") == report.get("model", {}).get("name"):
            found.append((candidate.parent.name, other))
    return found


def _variant_point(name: str, report: dict):
    latency = ((report.get("latency") or {}).get("edgecc") or {}).get("median_ms")
    size = (report.get("artifact") or {}).get("library_bytes")
    if latency is None or size is None:
        return None
    accuracy = report.get("accuracy") or {}
    drop = accuracy.get("accuracy_drop", 0.0) or 0.0
    return name, latency, size / 1e6, drop


def pareto_png(folder: Path, report: dict) -> str | None:
    points = [p for p in (_variant_point(n, r) for n, r in sibling_reports(folder, report)) if p]
    if len(points) < 2:
        return None
    plt, fig, ax = _figure()
    names, latency, size, drop = zip(*points)
    scatter = ax.scatter(latency, size, c=drop, cmap="viridis_r", s=80)
    for n, x, y in zip(names, latency, size):
        ax.annotate(n, (x, y), fontsize=8)
    front = sorted(p for p in points if not any(q[1] <= p[1] and q[2] <= p[2] and q[3] <= p[3] and q != p
                                                 for q in points))
    ax.plot([p[1] for p in sorted(front, key=lambda p: p[1])], [p[2] for p in sorted(front, key=lambda p: p[1])],
            "r--", alpha=0.5, label="Pareto front")
    fig.colorbar(scatter, ax=ax, label="accuracy drop")
    ax.set_xlabel("median latency (ms)")
    ax.set_ylabel("library size (MB)")
    ax.set_title(f"Variants of {report['model']['name']}")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def plotting_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def render_html(folder: Path, report: dict, markdown: str) -> str:
    plots = [("Tuning curve", tuning_curve_png(report)), ("Per-kernel time", kernel_bars_png(report)),
             ("Roofline", roofline_png(report)), ("Latency / size / accuracy", pareto_png(folder, report))] \
        if plotting_available() else []
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>edgecc report: {html.escape(report['model']['name'])} on "
             f"{html.escape(report['target']['name'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}pre{background:#f6f6f6;"
             "padding:1em;white-space:pre-wrap}img{max-width:100%;border:1px solid #ddd}"
             ".estimated{color:#a60;font-weight:bold}</style></head><body>"]
    energy = report.get("energy") or {}
    if energy.get("kind") == "estimated":
        parts.append("<p class='estimated'>Energy figures are ESTIMATED from the target file, not measured.</p>")
    if not plotting_available():
        parts.append("<p>Plots need matplotlib, which is not installed: pip install 'edgecc[plots]'.</p>")
    for title, png in plots:
        if png:
            parts.append(f"<h2>{html.escape(title)}</h2><img class='plot' alt='{html.escape(title)}' "
                         f"src='data:image/png;base64,{png}'>")
    parts.append(f"<h2>Report</h2><pre>{html.escape(markdown)}</pre></body></html>")
    return "\n".join(parts)
