"""report.md: the report as text, from a report.json dict (the same document report.html shows)."""

from __future__ import annotations

from pathlib import Path

from edgecc.reports.document import Paragraph, Section, to_markdown
from edgecc.reports.summary import precision_label


def title(report: dict) -> str:
    return f"edgecc report: {report['model']['name']} on {report['target']['name']}"


def headline(report: dict) -> Paragraph:
    """What was compiled, for what, and where it was measured, in one line."""
    model, target, options = report["model"], report["target"], report.get("options") or {}
    board = target.get("board") or {}
    inputs = model.get("inputs")
    if inputs:  # the shapes compiled for, whatever kind of model
        shape = "inputs " + ", ".join(f"`{i['name']}` {'x'.join(map(str, i['shape']))} {i['dtype']}" for i in inputs)
    else:
        shape = f"batch {options.get('batch')}" + (f", sequence {options['seq_len']}" if options.get("seq_len") else "")
        shape += "".join(f", input {spec}" for spec in options.get("input_specs") or [])
    machine = board.get("soc") or target.get("description", "")
    mcpu = (target.get("tvm_target") or {}).get("mcpu")
    if mcpu:
        machine += f" ({mcpu}, {board.get('cores')} cores)"
    versions = report.get("versions") or {}
    built = ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("edgecc", "tvm"))
    text = (
        f"`{model['source']}` ({model.get('kind', 'model')}, weights: {model.get('weights', '-')}), "
        f"**{precision_label(report)}**, {shape}, for **{target['name']}**: {machine}."
    )
    if target.get("resolved_from"):
        text += f" Target '{target['resolved_from']}' resolved to board {target['name']}."
    if model.get("description"):
        text += f" Architecture: {model['description']}."
    if model.get("stands_in_for"):
        text += f" **{model['name']} stands in for {model['stands_in_for']}.**"
    fallback = (model.get("import") or {}).get("fallback")
    if fallback:
        text += f" Import: {fallback}."
    return Paragraph(text + (f" Built with {built}." if built else ""))


def report_sections(report: dict, folder: Path | None = None) -> list[Section]:
    from edgecc.reports.sections import detail_sections
    from edgecc.reports.siblings import builds_section
    from edgecc.reports.summary import summary_section

    summary = summary_section(report)
    summary.blocks.insert(0, headline(report))
    sections = [summary, *detail_sections(report)]
    if folder is not None:
        builds = builds_section(folder, report)
        if builds is not None:
            sections.append(builds)
    return sections


def render_markdown(report: dict, folder: Path | None = None) -> str:
    return to_markdown(title(report), report_sections(report, folder))
