"""What changed between two compiled artifacts.

When both run on this machine, their latencies are measured again, side by side in alternating
rounds on the same inputs and threads: timings stored by two compiles were taken under different
load (on a shared machine one claimed -37.6 % where a side-by-side run measured 0.98x). Otherwise
the stored figures are shown and said plainly to come from different runs. Everything else
(size, accuracy, energy, kernels) comes from the two report.json files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecc.errors import EdgeccError, error_line
from edgecc.reports.summary import precision_label

SIDE_BY_SIDE_SECONDS = 2.0


def load_report(folder) -> dict:
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise EdgeccError(f"{folder} has no report.json; compile a model into it first")
    from edgecc.artifact.integrity import MAX_REPORT_BYTES, read_artifact_json
    from edgecc.reports.schema import READABLE_VERSIONS, validate_report

    data = read_artifact_json(path, MAX_REPORT_BYTES)
    if not isinstance(data, dict):
        raise EdgeccError(f"{path} is not a report (not a JSON object); compile the model again")
    return validate_report(data, str(path), versions=READABLE_VERSIONS)


# What reading a report.json that passed the schema check raises when a value deeper in it is of another
# kind than edgecc writes (a latency given as text, a kernel list of numbers).
WRONG_KIND = (AttributeError, IndexError, KeyError, TypeError, ValueError)


def wrong_kind(path: Path, exc: Exception) -> EdgeccError:
    return EdgeccError(
        f"{path} holds a value of a kind edgecc does not write ({type(exc).__name__}: {error_line(exc, limit=160)}); "
        "compile the model again"
    )


def _get(report: dict, *keys):
    value = report
    for key in keys:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


# (label, path into report.json, unit)
ROWS = [
    ("median latency", ("latency", "edgecc", "median_ms"), "ms"),
    ("p90 latency", ("latency", "edgecc", "p90_ms"), "ms"),
    ("latency CV", ("latency", "edgecc", "cv"), ""),
    ("vs ONNX Runtime", ("latency", "ratio_vs_onnxruntime"), "x"),
    ("library size", ("artifact", "library_bytes"), "bytes"),
    ("weights", ("model", "weights_bytes"), "bytes"),
    ("accuracy drop", ("accuracy", "accuracy_drop"), ""),
    ("energy/inference", ("energy", "joules_per_inference"), "J"),
    ("avg power", ("energy", "avg_watts"), "W"),
    ("compile time", ("compile", "total_seconds"), "s"),
]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _change(a, b) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a == 0:
        return "-"
    return f"{100 * (b - a) / abs(a):+.1f}%"


def workload_differences(a: dict, b: dict) -> list[str]:
    """What makes A and B different workloads (then no latency comparison is like with like)."""
    out = []
    for label, path in (
        ("model", ("model", "name")),
        ("target", ("target", "name")),
        ("batch", ("options", "batch")),
        ("sequence length", ("options", "seq_len")),
        ("inputs", ("options", "input_specs")),
    ):
        x, y = _get(a, *path), _get(b, *path)
        if x != y:
            out.append(f"{label} {_fmt(x)} vs {_fmt(y)}")
    return out


def compare_rows(a: dict, b: dict) -> list[tuple[str, str, str, str]]:
    rows = [
        ("model", _get(a, "model", "name"), _get(b, "model", "name"), ""),
        ("target", _get(a, "target", "name"), _get(b, "target", "name"), ""),
        ("precision", precision_label(a), precision_label(b), ""),
        ("verification", _get(a, "verification", "status"), _get(b, "verification", "status"), ""),
    ]
    rows = [(label, _fmt(x), _fmt(y), "" if x == y else "changed") for label, x, y, _ in rows]
    for label, path, unit in ROWS:
        x, y = _get(a, *path), _get(b, *path)
        if x is None and y is None:
            continue
        rows.append((f"{label} ({unit})" if unit else label, _fmt(x), _fmt(y), _change(x, y)))
    kinds = (_get(a, "energy", "kind"), _get(b, "energy", "kind"))
    if any(kinds):
        rows.append(("energy kind", _fmt(kinds[0]), _fmt(kinds[1]), "" if kinds[0] == kinds[1] else "NOT comparable"))
    return rows


def kernel_changes(a: dict, b: dict, top: int = 8) -> list[tuple[str, str, str, str]]:
    """Kernels whose total time changed most (by absolute ms), present in either profile."""
    ka = {k["name"]: k["total_ms"] for k in _get(a, "profile", "kernels") or []}
    kb = {k["name"]: k["total_ms"] for k in _get(b, "profile", "kernels") or []}
    names = sorted(set(ka) | set(kb), key=lambda n: abs(kb.get(n, 0.0) - ka.get(n, 0.0)), reverse=True)
    return [
        (
            n,
            _fmt(ka.get(n)),
            _fmt(kb.get(n)),
            _change(ka.get(n), kb.get(n)) if n in ka and n in kb else ("new" if n not in ka else "gone"),
        )
        for n in names[:top]
    ]


def _table(rows, header) -> str:
    rows = [header, *rows]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class SideBySide:
    """Both artifacts timed here in alternating rounds: medians, spread and the ratio B/A."""

    machine: str
    threads: str
    result: dict

    def verdict(self) -> str:
        ratio, (low, high) = self.result["ratio"], self.result["spread"]
        if low <= 1.0 <= high:
            return "no clear difference (1.00x lies within the rounds' spread)"
        return f"B is {'faster' if ratio < 1 else 'slower'} than A"

    def text(self, a: str, b: str) -> str:
        r = self.result
        rows = [
            (name, f"{s['median_ms']:.3f}", f"{s['min_ms']:.3f}", f"{s['p90_ms']:.3f}", f"{s['cv']:.3f}", s["runs"])
            for name, s in ((f"A {a}", r["a"]), (f"B {b}", r["b"]))
        ]
        out = (
            f"Re-measured side by side on this machine ({self.machine}, {self.threads}): {r['rounds']} alternating "
            f"rounds (A, B, A, B, ...), the same inputs for both.\n"
        )
        out += _table(rows, ("", "median ms", "min ms", "p90 ms", "CV", "samples"))
        out += (
            f"\nB/A: {r['ratio']:.2f}x (B's median over A's; the rounds' own ratios span {r['spread'][0]:.2f}-"
            f"{r['spread'][1]:.2f}x, interquartile): {self.verdict()}."
        )
        return out


@dataclass
class Comparison:
    """Rows of (what, A, B, change) for the stored figures and for the kernels that changed most,
    and the side-by-side re-measurement when there is one (else why not)."""

    a: str
    b: str
    rows: list
    kernels: list
    side_by_side: SideBySide | None = None
    not_remeasured: str = ""
    differences: list = field(default_factory=list)

    def text(self) -> str:
        parts = []
        if self.differences:
            parts.append(
                "A and B are different workloads (" + "; ".join(self.differences) + "): their latencies "
                "are not a like-with-like comparison."
            )
        if self.side_by_side is not None:
            parts.append(self.side_by_side.text(self.a, self.b))
            parts.append(
                "Stored figures, from each compile's own report (different runs; for latency use the "
                "side-by-side figures above):"
            )
        else:
            parts.append(
                f"Not re-measured: {self.not_remeasured}. The latencies below were stored by two "
                "different compiles, taken under whatever load each one saw: differences of a few "
                "percent (on a shared machine, far more) can be noise."
            )
        parts.append(_table(self.rows, ("", self.a, self.b, "change")))
        if self.kernels:
            parts.append(
                "Kernels that changed most (ms per inference, stored profiles):\n"
                + _table(self.kernels, ("kernel", self.a, self.b, "change"))
            )
        return "\n\n".join(parts)


def _why_not_here(folder, report: dict) -> str | None:
    from edgecc.artifact.loader import read_manifest

    manifest = read_manifest(Path(folder))
    if not manifest.get("loadable", True):
        return f"{folder} cannot be loaded as is ({'; '.join(manifest.get('missing', []))})"
    if not manifest.get("runs_on_host", True):
        return f"{folder} was compiled for '{_get(report, 'target', 'name')}', which does not run on this machine"
    return None


def remeasure(out_a, out_b, seconds: float = SIDE_BY_SIDE_SECONDS) -> SideBySide:
    """Load both artifacts here and time them in alternating rounds on A's sample inputs."""
    from edgecc.artifact.loader import load_artifact
    from edgecc.frontend.inputs import check_inputs
    from edgecc.measure.bench import artifact_sample_inputs
    from edgecc.measure.environment import environment
    from edgecc.measure.latency import compare_artifacts_here
    from edgecc.threads import size_tvm_thread_pool

    size_tvm_thread_pool()
    first, second = load_artifact(out_a), load_artifact(out_b)
    try:
        inputs = artifact_sample_inputs(first)
        check_inputs(inputs, second.inputs, f"{out_b}'s inputs")
        result = compare_artifacts_here(first, second, inputs, seconds)
    finally:
        first.close()
        second.close()
    import os

    return SideBySide(
        environment().get("processor") or "this machine",
        f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', '?')} for both",
        result,
    )


def compare_artifacts(out_a, out_b, remeasure_here: bool = True, seconds: float = SIDE_BY_SIDE_SECONDS) -> Comparison:
    a, b = load_report(out_a), load_report(out_b)
    for folder, report in ((out_a, a), (out_b, b)):
        try:  # each against itself first: a failure names the report it comes from
            compare_rows(report, report), kernel_changes(report, report), workload_differences(report, report)
        except WRONG_KIND as exc:
            raise wrong_kind(Path(folder) / "report.json", exc) from None
    comparison = Comparison(
        str(out_a), str(out_b), compare_rows(a, b), kernel_changes(a, b), differences=workload_differences(a, b)
    )
    if not remeasure_here:
        comparison.not_remeasured = "--stored was given"
        return comparison
    reason = _why_not_here(out_a, a) or _why_not_here(out_b, b)
    if reason is None and comparison.differences:
        reason = "the two are different workloads"
    if reason is not None:
        comparison.not_remeasured = reason
        return comparison
    try:
        comparison.side_by_side = remeasure(out_a, out_b, seconds)
    except EdgeccError as exc:
        comparison.not_remeasured = f"the side-by-side run failed: {exc}"
    return comparison
