"""report.md's Buckets section, from report.json["buckets"]."""

from __future__ import annotations


def bucket_lines(buckets: dict | None) -> list[str]:
    if not buckets:
        return []
    sizes = "; ".join(f"{name} 1..{values[-1]}" for name, values in (("batch", buckets.get("batch")),
                                                                    ("length", buckets.get("sequence"))) if values)
    lines = ["## Buckets", "", f"One artifact for {sizes}: each input runs in the smallest bucket that holds it, "
             "padded inside the library (attention mask 0) and its outputs cut back to the caller's size.",
             f"Constants {buckets['constant_bytes'] / 1e6:.1f} MB over all buckets, stored once shared: "
             f"{buckets['stored_constant_bytes'] / 1e6:.1f} MB.", "",
             "| bucket | function | kernels | compile s | edgecc median ms | ONNX Runtime median ms |",
             "|---|---|---:|---:|---:|---:|"]
    for bucket in buckets["buckets"]:
        shape = " x ".join(str(v) for v in (bucket["batch"], bucket["seq_len"]) if v is not None)
        latency = bucket.get("latency") or {}
        cells = [f"{latency[k]['median_ms']:.3f}" if latency.get(k) else "-" for k in ("edgecc", "onnxruntime")]
        lines.append(f"| {shape} | `{bucket['function']}` | {bucket['kernels']} | {bucket['compile_seconds']:.1f} | "
                     f"{cells[0]} | {cells[1]} |")
    rows = buckets.get("verification") or []
    if rows:
        worst = max(row["worst_rel_error"] for row in rows)
        sizes = ", ".join(" x ".join(str(v) for v in (row["batch"], row["seq_len"]) if v is not None) for row in rows)
        statuses = sorted({row["status"] for row in rows})
        lines += ["", f"Verified against ONNX Runtime at the true (unpadded) size at {sizes}: "
                  f"{'/'.join(statuses)}, worst relative error {worst:.3g}."]
    return [*lines, ""]
