"""`edgecc report OUT` re-renders report.md and report.html from report.json;
`edgecc compare OUT_A OUT_B` shows what changed between two compiled artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EdgeccError


def load_report(folder) -> dict:
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise EdgeccError(f"{folder} has no report.json; compile a model into it first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgeccError(f"{path} is not valid JSON: {exc}") from None
    from ..report_schema import validate_report

    return validate_report(data)


@click.command("report")
@click.argument("out", type=click.Path(path_type=Path))
def report_command(out: Path):
    """Re-render OUT/report.md and OUT/report.html from OUT/report.json."""
    from ..report import render_reports

    data = load_report(out)
    click.echo(f"rendering {out}/report.md and report.html (with plots) ...", err=True)
    render_reports(out, data)
    click.echo(f"wrote {out / 'report.md'} and {out / 'report.html'}")


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


@click.command("compare")
@click.argument("out_a", type=click.Path(path_type=Path))
@click.argument("out_b", type=click.Path(path_type=Path))
def compare_command(out_a: Path, out_b: Path):
    """Show what changed from OUT_A to OUT_B: latency, size, accuracy, energy, top kernel changes."""
    a, b = load_report(out_a), load_report(out_b)
    click.echo(_table(compare_rows(a, b), ("", str(out_a), str(out_b), "change")))
    kernels = kernel_changes(a, b)
    if kernels:
        click.echo("\nKernels that changed most (ms per inference):")
        click.echo(_table(kernels, ("kernel", str(out_a), str(out_b), "change")))


COMMANDS = [report_command, compare_command]
