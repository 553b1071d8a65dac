"""The report's Precision section: what the precision passes did, from report.json["passes"] (one
table of facts per pass, then its fallbacks, timings, Pareto front and layer choices as tables)."""

from __future__ import annotations

from edgecc.reports.document import Paragraph, Section, Table, cell

PRECISION_KEYS = ("instruction", "fallbacks", "timings", "pareto_front", "int8_layers", "bf16_layers")
_FACTS = (
    ("instruction", "instruction"),
    ("arithmetic", "arithmetic"),
    ("accumulation", "accumulation"),
    ("weights", "weights"),
    ("activations", "activations"),
    ("fp16_math_layers", "FP16-math layers"),
    ("timing", "timing"),
    ("latency", "latency"),
    ("int8_math_layers", "INT8-math layers"),
    ("bf16_math_layers", "BF16-math layers"),
    ("fp32_layers", "FP32 layers"),
    ("attention", "attention"),
    ("budget", "accuracy budget"),
    ("evaluated_configurations", "configurations evaluated"),
)


def is_precision_pass(stats) -> bool:
    """A precision pass's stats, or the attention fusion's when it timed INT8 against BF16 attention."""
    return isinstance(stats, dict) and (any(key in stats for key in PRECISION_KEYS) or bool(stats.get("tile_timings")))


def _shape(shape) -> str:
    return "x".join(map(str, shape or ()))


def _count(value) -> str:
    return str(len(value)) if isinstance(value, (list, tuple)) else cell(value)


def _pass_blocks(name: str, stats: dict) -> list:
    facts = []
    for key, label in _FACTS:
        if key == "instruction" and key in stats:
            facts.append([label, stats[key] or "none on this target (compiled as FP32)"])
        elif stats.get(key) not in (None, "", [], {}):
            facts.append([label, _count(stats[key]) if key.endswith("_layers") else stats[key]])
    blocks = (
        [Paragraph(f"`{name}`:"), Table(["", ""], facts, numeric=[False, False])]
        if facts
        else [Paragraph(f"`{name}`: no details recorded.")]
    )
    if stats.get("fallbacks"):
        blocks.append(
            Table(
                ["layer kept FP32", "weight", "reason"],
                [[f["layer"], _shape(f.get("shape")), f["reason"]] for f in stats["fallbacks"]],
                numeric=[False, False, False],
            )
        )
    if stats.get("instruction_fallbacks"):  # INT8 still, on the one-row instruction (smmla -> sdot)
        blocks.append(
            Table(
                [f"layer on {stats.get('fallback_instruction') or 'the fallback instruction'}", "weight", "reason"],
                [[f["layer"], _shape(f.get("shape")), f["reason"]] for f in stats["instruction_fallbacks"]],
                numeric=[False, False, False],
            )
        )
    if stats.get("timings"):
        precisions = [k[:-3] for k in stats["timings"][0] if k.endswith("_us")]
        blocks.append(
            Table(
                ["input", "N", "layers", *(f"{p} us" for p in precisions), "kept"],
                [
                    [
                        _shape(t["input_shape"]),
                        t["n"],
                        len(t["layers"]),
                        *(f"{t[p + '_us']:.1f}" for p in precisions),
                        t["kept"],
                    ]
                    for t in stats["timings"]
                ],
                caption="Each shape timed in each precision here; the fastest is kept.",
            )
        )
    if stats.get("tile_timings"):
        blocks.append(
            Table(
                ["attention (Q, K^T, V)", "attentions", "int8 us", "bf16 us", "fp32 us", "kept"],
                [
                    [
                        t["plan"],
                        t["attentions"],
                        f"{t['int8_us']:.1f}",
                        cell(t.get("bf16_us")),
                        cell(t.get("fp32_us")),
                        t["kept"],
                    ]
                    for t in stats["tile_timings"]
                ],
                caption=(
                    "Each attention timed with INT8 products and with BF16 ones (AMX) or FP32 ones (VNNI) here;"
                    " the faster is kept."
                ),
            )
        )
    if stats.get("pareto_front"):
        rows = [
            [
                f"{p['latency_us']:.0f}",
                f"{p['weight_bytes'] / 1e6:.1f}",
                f"{p['accuracy_drop']:.2e}",
                f"{p['counts']['int8']} / {p['counts']['bf16']} / {p['counts']['fp32']}",
                "yes" if p["chosen"] else "",
            ]
            for p in stats["pareto_front"]
        ]
        blocks.append(
            Table(["dense latency us", "weight MB", "calibration drop", "int8 / bf16 / fp32", "chosen"], rows)
        )
    if stats.get("layers") and stats.get("pareto_front"):
        rows = []
        for layer in stats["layers"]:
            sensitivity = layer.get("sensitivity") or {}
            drops = [f"{sensitivity.get(p, float('nan')):.2e}" for p in ("int8", "bf16")]
            rows.append([layer["layer"], layer["kind"], _shape(layer["shape"]), layer["precision"], *drops])
        blocks.append(Table(["layer", "kind", "shape", "precision", "drop if INT8", "drop if BF16"], rows))
    return blocks


def precision_section(report: dict) -> Section | None:
    passes = {name: stats for name, stats in (report.get("passes") or {}).items() if is_precision_pass(stats)}
    if not passes:
        return None
    section = Section("Precision")
    for name, stats in passes.items():
        section.add(*_pass_blocks(name, stats))
    return section
