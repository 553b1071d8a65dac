"""report.md's Precision section: what the precision passes did, from report.json["passes"]."""

from __future__ import annotations


def precision_lines(passes: dict | None) -> list[str]:
    lines = []
    for name, stats in (passes or {}).items():
        if not isinstance(stats, dict):
            continue
        lines += [f"### {name}", ""]
        if "instruction" in stats:
            lines.append(f"- Instruction: {stats['instruction'] or 'none on this target (compiled as FP32)'}")
        for key in ("weights", "activations", "timing", "latency"):
            if stats.get(key):
                lines.append(f"- {key.title()}: {stats[key]}")
        for key, label in (("int8_math_layers", "INT8-math layers"), ("bf16_math_layers", "BF16-math layers"),
                           ("fp32_layers", "FP32 layers")):
            if key in stats:
                lines.append(f"- {label}: {stats[key]}")
        if stats.get("attention"):
            lines.append(f"- Attention: {stats['attention']}")
        lines.append("")
        if stats.get("fallbacks"):
            lines += ["| layer kept FP32 | weight | reason |", "|---|---|---|"]
            lines += [f"| {f['layer']} | {'x'.join(map(str, f['shape']))} | {f['reason']} |"
                      for f in stats["fallbacks"]]
            lines.append("")
        if stats.get("timings"):
            precisions = [k[:-3] for k in stats["timings"][0] if k.endswith("_us")]
            lines += ["| input | N | layers | " + " | ".join(f"{p} us" for p in precisions) + " | kept |",
                      "|---|---:|---:|" + "---:|" * len(precisions) + "---|"]
            for t in stats["timings"]:
                lines.append(f"| {'x'.join(map(str, t['input_shape']))} | {t['n']} | {len(t['layers'])} | "
                             + " | ".join(f"{t[p + '_us']:.1f}" for p in precisions) + f" | {t['kept']} |")
            lines.append("")
        if stats.get("pareto_front"):
            lines += ["| dense latency us | weight MB | calibration drop | int8 / bf16 / fp32 | chosen |",
                      "|---:|---:|---:|---|---|"]
            for p in stats["pareto_front"]:
                c = p["counts"]
                lines.append(f"| {p['latency_us']:.0f} | {p['weight_bytes'] / 1e6:.1f} | {p['accuracy_drop']:.2e} | "
                             f"{c['int8']} / {c['bf16']} / {c['fp32']} | {'yes' if p['chosen'] else ''} |")
            lines.append("")
        if stats.get("layers") and stats.get("pareto_front"):
            lines += ["| layer | kind | shape | precision | drop if INT8 | drop if BF16 |",
                      "|---|---|---|---|---:|---:|"]
            for layer in stats["layers"]:
                sens = layer["sensitivity"]
                lines.append(f"| {layer['layer']} | {layer['kind']} | {'x'.join(map(str, layer['shape']))} | "
                             f"{layer['precision']} | "
                             f"{sens.get('int8', float('nan')):.2e} | {sens.get('bf16', float('nan')):.2e} |")
            lines.append("")
    return (["## Precision", ""] + lines) if lines else []
