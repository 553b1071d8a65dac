"""What changed between two compiled artifacts, read from their report.json files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgecc.errors import EdgeccError


def load_report(folder) -> dict:
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise EdgeccError(f"{folder} has no report.json; compile a model into it first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgeccError(f"{path} is not valid JSON: {exc}") from None
    from edgecc.reports.schema import READABLE_VERSIONS, validate_report

    return validate_report(data, str(path), versions=READABLE_VERSIONS)


def _get(report: dict, *keys):
    value = report
    for key in keys:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


# (label, path into report.json, unit, lower is better)
ROWS = [
    ("median latency", ("latency", "edgecc", "median_ms"), "ms", True),
    ("p90 latency", ("latency", "edgecc", "p90_ms"), "ms", True),
    ("latency CV", ("latency", "edgecc", "cv"), "", True),
    ("vs ONNX Runtime", ("latency", "ratio_vs_onnxruntime"), "x", True),
    ("library size", ("artifact", "library_bytes"), "bytes", True),
    ("weights", ("model", "weights_bytes"), "bytes", True),
    ("accuracy drop", ("accuracy", "accuracy_drop"), "", True),
    ("energy/inference", ("energy", "joules_per_inference"), "J", True),
    ("avg power", ("energy", "avg_watts"), "W", True),
    ("compile time", ("compile", "total_seconds"), "s", True),
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


def compare_rows(a: dict, b: dict) -> list[tuple[str, str, str, str]]:
    rows = [("model", _get(a, "model", "name"), _get(b, "model", "name"), ""),
            ("target", _get(a, "target", "name"), _get(b, "target", "name"), ""),
            ("precision", _get(a, "options", "precision"), _get(b, "options", "precision"), ""),
            ("verification", _get(a, "verification", "status"), _get(b, "verification", "status"), "")]
    rows = [(label, _fmt(x), _fmt(y), "" if x == y else "changed") for label, x, y, _ in rows]
    for label, path, unit, _ in ROWS:
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
    return [(n, _fmt(ka.get(n)), _fmt(kb.get(n)), _change(ka.get(n), kb.get(n)) if n in ka and n in kb
             else ("new" if n not in ka else "gone")) for n in names[:top]]


def _table(rows, header) -> str:
    rows = [header, *rows]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Comparison:
    """Rows of (what, A, B, change) for the headline figures and for the kernels that changed most."""

    a: str
    b: str
    rows: list
    kernels: list

    def text(self) -> str:
        out = _table(self.rows, ("", self.a, self.b, "change"))
        if self.kernels:
            out += "\n\nKernels that changed most (ms per inference):\n"
            out += _table(self.kernels, ("kernel", self.a, self.b, "change"))
        return out


def compare_artifacts(out_a, out_b) -> Comparison:
    a, b = load_report(out_a), load_report(out_b)
    return Comparison(str(out_a), str(out_b), compare_rows(a, b), kernel_changes(a, b))
