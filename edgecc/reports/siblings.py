"""Other builds of the same model next to this artifact folder, split into the comparable ones (same
model, input shapes, target) and the rest, which are listed but never plotted as peers.

While a compile writes its report, the folder is a hidden staging folder (`.name.staging-...`);
the build is named by its final output folder instead, and no hidden folder is ever a sibling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgecc.reports.document import Paragraph, Plot, Section, Table


@dataclass(frozen=True)
class Build:
    name: str
    report: dict
    differs: str = ""  # empty when comparable: what makes it a different workload otherwise

    @property
    def median_ms(self):
        return ((self.report.get("latency") or {}).get("edgecc") or {}).get("median_ms")

    @property
    def library_mb(self):
        size = (self.report.get("artifact") or {}).get("library_bytes")
        return None if size is None else size / 1e6

    @property
    def accuracy_drop(self) -> float:
        return (self.report.get("accuracy") or {}).get("accuracy_drop") or 0.0


def build_name(folder: Path, report: dict) -> str:
    """The folder's name as the user knows it (the final output folder, not a staging folder)."""
    folder = Path(folder)
    if folder.name.startswith("."):
        output = (report.get("options") or {}).get("output")
        if output:
            return Path(output).name
        return folder.name.split(".staging-")[0].lstrip(".") or folder.name
    return folder.name


def _workload(report: dict) -> dict:
    """What must match for two builds' latencies to be compared: target and input shapes (the shapes
    compiled for where the report lists them; older reports: batch, sequence length, input specs)."""
    options = report.get("options") or {}
    inputs = (report.get("model") or {}).get("inputs")
    shapes = tuple((i["name"], tuple(i["shape"]), i["dtype"]) for i in inputs) if inputs else None
    return {
        "target": (report.get("target") or {}).get("name"),
        "batch": options.get("batch"),
        "seq_len": options.get("seq_len"),
        "inputs": tuple(options.get("input_specs") or ()),
        "shapes": shapes,
    }


def _difference(mine: dict, theirs: dict) -> str:
    parts = []
    keys = (("target", "target"), ("batch", "batch"), ("seq_len", "sequence length"), ("inputs", "inputs"))
    if mine["shapes"] and theirs["shapes"]:  # both know their shapes: those decide, not the options
        keys = (("target", "target"), ("shapes", "input shapes"))
    for key, label in keys:
        if mine[key] != theirs[key]:
            value = theirs[key]
            if key == "shapes":
                value = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s, _ in value)
            parts.append(f"{label} {value if value not in ((), None) else '-'}")
    return ", ".join(parts)


def other_builds(folder: Path, report: dict) -> list[Build]:
    """Every other build of the same model beside `folder`, each marked comparable or not (and why)."""
    folder = Path(folder).resolve()
    own = build_name(folder, report)
    mine = _workload(report)
    builds = []
    for candidate in sorted(folder.parent.glob("*/report.json")):
        name = candidate.parent.name
        if name.startswith(".") or name == own or candidate.parent == folder:
            continue
        try:
            other = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if (other.get("model") or {}).get("name") != (report.get("model") or {}).get("name"):
            continue
        builds.append(Build(name, other, _difference(mine, _workload(other))))
    return builds


def comparable_points(folder: Path, report: dict) -> list[Build]:
    """This build and the comparable others, each with a latency and a size (the Pareto chart's points)."""
    points = [Build(build_name(folder, report), report)] + [b for b in other_builds(folder, report) if not b.differs]
    return [p for p in points if p.median_ms is not None and p.library_mb is not None]


def builds_section(folder: Path, report: dict) -> Section | None:
    builds = other_builds(folder, report)
    if not builds:
        return None
    own = build_name(folder, report)
    rows = [
        [
            f"**{own}** (this build)",
            (report.get("options") or {}).get("precision"),
            _fmt(Build(own, report).median_ms),
            _fmt(Build(own, report).library_mb),
            _fmt(Build(own, report).accuracy_drop),
            "-",
        ]
    ]
    rows += [
        [
            b.name,
            (b.report.get("options") or {}).get("precision"),
            _fmt(b.median_ms),
            _fmt(b.library_mb),
            _fmt(b.accuracy_drop),
            b.differs or "comparable",
        ]
        for b in builds
    ]
    section = Section("Other builds of this model").add(
        Paragraph(
            "Builds in the folders next to this one. Only those with the same target and input shapes are "
            "plotted together; the latencies come from each build's own compile (different runs), so "
            "differences of a few percent are noise: re-measure two builds side by side with "
            "`edgecc compare A B`."
        ),
        Table(["build", "precision", "median ms", "library MB", "accuracy drop", "differs in"], rows),
    )
    if len(comparable_points(folder, report)) >= 2:
        section.add(Plot("Latency / size / accuracy", "Comparable builds only; the red line joins the Pareto-best."))
    return section


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}"
