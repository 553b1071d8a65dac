"""report.json (the record) and report.md (the read) for one compiled artifact."""

from __future__ import annotations

from pathlib import Path

from ._atomic import write_json_atomic, write_text_atomic

SCHEMA_VERSION = 1


def write_reports(folder: Path, report: dict) -> None:
    report = {"schema_version": SCHEMA_VERSION, **report}
    write_json_atomic(Path(folder) / "report.json", report)
    write_text_atomic(Path(folder) / "report.md", render_markdown(report))


def _ms(stats: dict | None, key: str = "median_ms") -> str:
    return "-" if not stats else f"{stats[key]:.3f}"


def render_markdown(report: dict) -> str:
    model, target = report["model"], report["target"]
    lines = [f"# edgecc report: {model['name']} on {target['name']}", ""]
    if target.get("resolved_from"):
        lines.append(f"Target '{target['resolved_from']}' resolved to board **{target['name']}**.")
    lines += [f"- Model: {model['source']} ({model.get('parameters', '?'):,} parameters, weights: {model['weights']})"
              if isinstance(model.get("parameters"), int) else f"- Model: {model['source']}",
              f"- Target: {target['description']}",
              f"- Precision: {report['options']['precision']}",
              f"- Compile time: {report['compile']['total_seconds']:.1f} s", ""]
    artifact = report["artifact"]
    lines += ["## Artifact", "", "| file | bytes |", "|---|---:|"]
    lines += [f"| {name} | {info['bytes']:,} |" for name, info in artifact["files"].items()]
    lines += ["", f"Library: `{artifact['library']}`. {artifact.get('load', '')}", ""]
    verification = report["verification"]
    lines += ["## Verification", "", f"Status: **{verification['status']}**: {verification['reason']}", ""]
    if verification.get("outputs"):
        lines += ["| output | shape | max abs error | max rel error |", "|---|---|---:|---:|"]
        lines += [f"| {r['name']} | {'x'.join(map(str, r['shape']))} | {r['max_abs_error']:.3g} | "
                  f"{r['max_rel_error']:.3g} |" for r in verification["outputs"]]
        lines.append("")
    latency = report.get("latency") or {}
    if latency.get("edgecc"):
        where = latency.get("where", "host")
        lines += ["## Latency", ""]
        if latency.get("emulated"):
            lines += ["**Emulated board (QEMU): these timings say nothing about the real board's speed.**", ""]
        lines += [f"Measured on {where}, batch {report['options']['batch']}.", "",
                  "| runtime | median ms | min ms | mean ms | p90 ms | p99 ms | std ms | CV | runs |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in ("edgecc", "onnxruntime"):
            s = latency.get(name)
            if s:
                lines.append(f"| {name} | {s['median_ms']:.3f} | {s['min_ms']:.3f} | {s['mean_ms']:.3f} | "
                             f"{s['p90_ms']:.3f} | {s['p99_ms']:.3f} | {s['std_ms']:.3f} | {s['cv']:.3f} | {s['runs']} |")
        if latency.get("ratio_vs_onnxruntime"):
            lines += ["", f"edgecc / ONNX Runtime median latency: **{latency['ratio_vs_onnxruntime']:.2f}x** "
                      "(below 1 means edgecc is faster)."]
        for warning in latency.get("warnings", []):
            lines.append(f"\nWarning: {warning}")
        lines.append("")
    for section in ("tuning", "accuracy", "energy"):
        if report.get(section):
            lines += [f"## {section.title()}", "", "```", _compact(report[section]), "```", ""]
    return "\n".join(lines)


def _compact(value) -> str:
    import json

    return json.dumps(value, indent=1, default=str)[:4000]
