"""The report's Buckets section, from report.json["buckets"] (a section of the report document,
edgecc/reports/document.py, so report.md and report.html both show it as a table)."""

from __future__ import annotations

from edgecc.reports.document import Paragraph, Section, Table


def _shape(row: dict) -> str:
    return " x ".join(str(v) for v in (row.get("batch"), row.get("seq_len")) if v is not None)


def buckets_section(report: dict) -> Section | None:
    buckets = report.get("buckets")
    if not buckets:
        return None
    sizes = "; ".join(
        f"{name} 1..{values[-1]}"
        for name, values in (("batch", buckets.get("batch")), ("length", buckets.get("sequence")))
        if values
    )
    section = Section("Buckets").add(
        Paragraph(
            f"One artifact for {sizes}: each input runs in the smallest bucket that holds it, padded inside "
            "the library "
            f"(attention mask 0) and its outputs cut back to the caller's size. Constants "
            f"{buckets['constant_bytes'] / 1e6:.1f} MB over all buckets, stored once shared: "
            f"{buckets['stored_constant_bytes'] / 1e6:.1f} MB."
        )
    )
    rows = []
    for bucket in buckets["buckets"]:
        latency = bucket.get("latency") or {}
        rows.append(
            [
                _shape(bucket),
                f"`{bucket['function']}`",
                bucket["kernels"],
                f"{bucket['compile_seconds']:.1f}",
                *(f"{latency[k]['median_ms']:.3f}" if latency.get(k) else "-" for k in ("edgecc", "onnxruntime")),
            ]
        )
    section.add(
        Table(["bucket", "function", "kernels", "compile s", "edgecc median ms", "ONNX Runtime median ms"], rows)
    )
    checked = buckets.get("verification") or []
    if checked:
        worst = max(row["worst_rel_error"] for row in checked)
        statuses = "/".join(sorted({row["status"] for row in checked}))
        section.add(
            Paragraph(
                f"Verified against ONNX Runtime at the true (unpadded) size at "
                f"{', '.join(_shape(row) for row in checked)}: {statuses}, worst relative error "
                f"{worst:.3g}."
            )
        )
    return section
