"""Other builds of the same model next to this artifact folder, split into the comparable ones (same
model, input shapes, target) and the rest, which are listed but never plotted as peers.

While a compile writes its report, the folder is a hidden staging folder (`.name.staging-...`);
the build is named by its final output folder instead, and no hidden folder is ever a sibling.
A sibling's report.json is someone else's file: one that cannot be read, is not a report or holds
values of the wrong kind is skipped with a note (it once broke every compile into that parent).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from edgecc.bounded_json import read_bounded_json
from edgecc.errors import EdgeccError
from edgecc.reports.document import Paragraph, Plot, Section, Table
from edgecc.reports.summary import precision_label

# The share of the cores that the 1-minute load must pass for a build to count as timed on a loaded
# machine (the threshold edgecc.measure.environment warns at).
LOADED_SHARE = 0.5


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

    @property
    def load(self) -> str:
        """How loaded the machine was while this build was timed: 'idle', 'loaded' or 'unknown'
        (a board over RPC, or an older report)."""
        env = self.report.get("environment") or {}
        load, cores = (env.get("load_average") or [None])[0], env.get("cpu_count")
        if load is None or not cores:
            return "unknown"
        return "loaded" if load > LOADED_SHARE * cores else "idle"

    @property
    def load_text(self) -> str:
        env = self.report.get("environment") or {}
        if self.load == "unknown":
            return "load unknown"
        return f"{self.load} (1-min load {env['load_average'][0]:.1f} on {env['cpu_count']} cores)"


def dominates(a: Build, b: Build, objectives) -> bool:
    """`a` is no worse than `b` in every objective and better in at least one (lower is better)."""
    pairs = [(objective(a), objective(b)) for objective in objectives]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto_front(points: list[Build], objectives) -> list[Build]:
    """The points no other point dominates, by latency; equal points are all on it."""
    front = [p for p in points if not any(dominates(q, p, objectives) for q in points if q is not p)]
    return sorted(front, key=lambda p: p.median_ms)


PLANE = (attrgetter("median_ms"), attrgetter("library_mb"))  # what the chart's axes show
WITH_ACCURACY = (*PLANE, attrgetter("accuracy_drop"))


def same_load(points: list[Build]) -> tuple[list[Build], list[Build]]:
    """(builds timed under this build's load, the others). Load slows whole runs, so latencies timed
    idle and loaded are not one scale: only the first share a front."""
    own = points[0].load if points else "unknown"
    return [p for p in points if p.load == own], [p for p in points if p.load != own]


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
    return sibling_builds(folder, report)[0]


def sibling_builds(folder: Path, report: dict) -> tuple[list[Build], list[str]]:
    """(the other builds of the same model beside `folder`, notes on the report.json files skipped)."""
    folder = Path(folder).resolve()
    own = build_name(folder, report)
    mine = _workload(report)
    builds, skipped = [], []
    for candidate in sorted(folder.parent.glob("*/report.json")):
        name = candidate.parent.name
        if name.startswith(".") or name == own or candidate.parent == folder:
            continue
        try:
            other = _sibling_report(candidate)
            if (other.get("model") or {}).get("name") != (report.get("model") or {}).get("name"):
                continue
            build = Build(name, other, _difference(mine, _workload(other)))
            _cells(build), _comparable(Build(own, report), build)  # every value the section shows, once
        except EdgeccError as exc:
            skipped.append(f"{name}: {exc}")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a value of the wrong kind somewhere
            skipped.append(f"{name}: {candidate} holds a value of the wrong kind ({type(exc).__name__}: {exc})")
        else:
            builds.append(build)
    return builds, skipped


def _sibling_report(path: Path) -> dict:
    from edgecc.artifact.integrity import MAX_REPORT_BYTES
    from edgecc.reports.schema import READABLE_VERSIONS, validate_report

    data = read_bounded_json(path, MAX_REPORT_BYTES)
    if not isinstance(data, dict):
        raise EdgeccError(f"{path} is not a report (not a JSON object)")
    return validate_report(data, str(path), versions=READABLE_VERSIONS)


def comparable_points(folder: Path, report: dict) -> list[Build]:
    """This build and the comparable others, each with a latency and a size (the Pareto chart's points)."""
    return _plotted(Build(build_name(folder, report), report), other_builds(folder, report))


def _plotted(own: Build, others: list[Build]) -> list[Build]:
    points = [own] + [b for b in others if not b.differs]
    return [p for p in points if p.median_ms is not None and p.library_mb is not None]


def builds_section(folder: Path, report: dict) -> Section | None:
    builds, skipped = sibling_builds(folder, report)
    notes = Paragraph("Skipped (their report.json cannot be read): " + "; ".join(skipped), "note") if skipped else None
    if not builds:
        return Section("Other builds of this model").add(notes) if notes else None
    own = Build(build_name(folder, report), report)
    rows = [[f"**{own.name}** (this build)", *_cells(own), "-"]]
    rows += [[b.name, *_cells(b), b.differs or _comparable(own, b)] for b in builds]
    section = Section("Other builds of this model").add(
        Paragraph(
            "Builds in the folders next to this one. Only those with the same target and input shapes are "
            "plotted together, and only those timed under the same load as this one share its Pareto front; "
            "the latencies come from each build's own compile (different runs), so differences of a few "
            "percent are noise: re-measure two builds side by side with `edgecc compare A B`."
        ),
        Table(["build", "precision", "median ms", "library MB", "accuracy drop", "timed", "differs in"], rows),
    )
    if notes:
        section.add(notes)
    if len(_plotted(own, builds)) >= 2:  # the siblings read above, not read again
        section.add(
            Plot(
                "Latency / size / accuracy",
                "Comparable builds only; the red line joins the Pareto-best in latency and size among the builds "
                "timed under this one's load, a red ring marks those Pareto-best only once accuracy counts, and "
                "hollow markers are builds timed under another load (not on the front).",
            )
        )
    return section


def _cells(build: Build) -> list:
    return [
        precision_label(build.report),
        _fmt(build.median_ms),
        _fmt(build.library_mb),
        _fmt(build.accuracy_drop),
        build.load_text,
    ]


def _comparable(own: Build, other: Build) -> str:
    return "comparable" if other.load == own.load else f"comparable, but timed {other.load} (this build: {own.load})"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}"
