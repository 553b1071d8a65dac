"""Reports for one compiled artifact: report.json (the record; schema in docs/report-schema.md), and
the same document (`document.py`: a summary, `summary.py`, then details, `sections.py`) written as
report.md (`markdown.py`) and report.html (with plots, `html.py`, `plots.py`); `compare.py` compares two."""

from __future__ import annotations

from pathlib import Path

from edgecc.atomic import write_json_atomic, write_text_atomic
from edgecc.reports.schema import SCHEMA_VERSION, validate_report


def report_data(ctx) -> dict:
    """report.json's content from a finished compile's context (edgecc.context.CompileContext)."""
    from dataclasses import asdict

    from edgecc.artifact.manifest import file_table

    files = file_table(ctx.stage_dir)
    return {
        "model": {
            "name": ctx.source.name,
            "source": str(ctx.model),
            "kind": ctx.source.kind,
            "weights": ctx.source.weights,
            "parameters": ctx.source.parameters,
            "weights_bytes": ctx.weights_bytes,
            "onnx_ops": ctx.imported.op_counts,
            "import": ctx.imported.import_notes(),
            "inputs": [spec.to_dict() for spec in ctx.imported.inputs],
            **_builtin_facts(ctx),
        },
        "target": ctx.target.to_dict(),
        "options": ctx.options.to_dict(),
        "versions": ctx.manifest["versions"],
        "compile": {
            "steps": [{"name": n, "seconds": s} for n, s in ctx.step_seconds],
            "total_seconds": sum(seconds for _, seconds in ctx.step_seconds),
        },
        "artifact": {
            "library": ctx.packaged.library,
            "files": files,
            "contents": ctx.packaged.contents,
            "load": ctx.packaged.load,
            "loadable": ctx.packaged.loadable,
            "missing": ctx.packaged.missing,
            "library_bytes": files.get(ctx.packaged.library, {}).get("bytes"),
        },
        "passes": {name: asdict(stats) for name, stats in ctx.pass_stats.items()},
        "precision": ctx.applied_precision.to_dict() if ctx.applied_precision is not None else {},
        "schedules": ctx.schedules.to_dict() if ctx.schedules is not None else {},
        "verification": ctx.verification,
        "latency": ctx.latency,
        "tuning": ctx.tuning,
        "accuracy": ctx.accuracy,
        "environment": ctx.environment,
        "energy": ctx.energy,
        "profile": ctx.profile,
        **({"buckets": ctx.buckets.to_dict()} if ctx.buckets is not None else {}),
    }


def write_reports(folder: Path, report: dict) -> None:
    report = validate_report({**report, "schema_version": SCHEMA_VERSION})
    write_json_atomic(Path(folder) / "report.json", report)
    render_reports(folder, report)


def render_reports(folder: Path, report: dict) -> None:
    """report.md and report.html from a report dict (also used by `edgecc report OUT` to re-render)."""
    from edgecc.reports.html import render_html
    from edgecc.reports.markdown import render_markdown

    markdown, page = render_markdown(report, Path(folder)), render_html(Path(folder), report)  # both, or neither
    write_text_atomic(Path(folder) / "report.md", markdown)
    write_text_atomic(Path(folder) / "report.html", page)


def _builtin_facts(ctx) -> dict:
    """A built-in's description, and the architecture it stands in for, if any."""
    if ctx.source.kind != "builtin":
        return {}
    from edgecc.frontend import builtin_model

    spec = builtin_model(ctx.source.name)
    return {"description": spec.description, **({"stands_in_for": spec.stands_in_for} if spec.stands_in_for else {})}
