"""report.md: the report as text, from a report.json dict."""

from __future__ import annotations

from edgecc.buckets.report import bucket_lines
from edgecc.reports.precision import precision_lines


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
    fallback = (model.get("import") or {}).get("fallback")
    if fallback:
        lines[-1:-1] = [f"- Import: {fallback}"]
    artifact = report["artifact"]
    lines += ["## Artifact", "", "| file | bytes |", "|---|---:|"]
    lines += [f"| {name} | {info['bytes']:,} |" for name, info in artifact["files"].items()]
    lines += ["", f"Library: `{artifact['library']}`. {artifact.get('load', '')}", ""]
    lines += [f"- {key}: {value}" for key, value in (artifact.get("contents") or {}).items()]
    lines += [f"- **missing to run it:** {item}" for item in artifact.get("missing") or []]
    if artifact.get("contents") or artifact.get("missing"):
        lines.append("")
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
    lines += bucket_lines(report.get("buckets"))
    lines += _schedule_lines(report.get("schedules"))
    lines += _energy_lines(report.get("energy"))
    lines += _profile_lines(report.get("profile"))
    lines += _environment_lines(report.get("environment"))
    lines += precision_lines(report.get("passes"))
    for section in ("tuning", "accuracy"):
        if report.get(section):
            lines += [f"## {section.title()}", "", "```", _compact(report[section]), "```", ""]
    return "\n".join(lines)


def _compact(value) -> str:
    import json

    return json.dumps(value, indent=1, default=str)[:4000]


def _energy_lines(energy: dict | None) -> list[str]:
    if not energy:
        return []
    label = "**ESTIMATED** (no power meter; from the target file's power figures)" \
        if energy["kind"] == "estimated" else f"measured with {energy['meter']}"
    lines = ["## Energy", "", f"Energy per inference: {label}.", "",
             "| joules/inference (above idle) | joules/inference (total) | avg W | peak W | idle W | sample rate | rails |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    rate = energy.get("sample_rate_hz")
    lines.append(f"| {energy['joules_per_inference']:.4g} | {energy.get('joules_per_inference_total', 0):.4g} | "
                 f"{energy['avg_watts']:.3g} | {energy['peak_watts']:.3g} | {energy.get('idle_watts', 0):.3g} | "
                 f"{'-' if rate is None else f'{rate:.1f} Hz'} | {', '.join(energy.get('rails') or []) or '-'} |")
    if energy.get("basis"):
        lines += ["", f"Estimate basis: {energy['basis']}."]
    return lines + [""]


def _profile_lines(profile: dict | None, top: int = 20) -> list[str]:
    if not profile or not profile.get("kernels"):
        return []
    lines = ["## Per-kernel profile", ""]
    if profile.get("end_to_end_ms"):
        lines.append(f"Kernels sum to {profile['sum_ms']:.3f} ms of {profile['end_to_end_ms']:.3f} ms end to end "
                     f"({100 * profile['sum_over_end_to_end']:.0f}%, both medians over {profile.get('rounds', 1)} "
                     f"alternating rounds); the other {profile['end_to_end_ms'] - profile['sum_ms']:.3f} ms is the "
                     f"runtime's own work between kernels (dispatch, allocation) and timing noise. "
                     f"Peak: {profile.get('peak_gflops')} GFLOP/s, {profile.get('memory_bandwidth_gbs')} GB/s.")
    lines += ["", "| kernel | calls | ms | share | GFLOP | MB | FLOP/B | GFLOP/s | GB/s | bound | % peak | % roof |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for k in profile["kernels"][:top]:
        lines.append(f"| {k['name']} | {k['calls']} | {k['total_ms']:.3f} | {100 * k.get('share', 0):.1f}% | "
                     f"{k['flops'] / 1e9:.3g} | {k['bytes'] / 1e6:.3g} | {k['arithmetic_intensity']:.2f} | "
                     f"{k['achieved_gflops']:.2f} | {k['achieved_gbs']:.2f} | {k.get('bound', '-')} | "
                     f"{k.get('pct_of_peak_compute', 0):.1f} | {k.get('pct_of_roofline', 0):.1f} |")
    if len(profile["kernels"]) > top:
        lines.append(f"\n({len(profile['kernels']) - top} smaller kernels not shown; all are in report.json.)")
    for skipped in profile.get("skipped", []):
        lines.append(f"\nNot profiled: {skipped['name']}: {skipped['reason']}")
    return lines + [""]


def _environment_lines(env: dict | None) -> list[str]:
    if not env:
        return []
    lines = ["## Environment", "", f"- Machine: {env.get('processor') or env['machine']} ({env['cpu_count']} CPUs)",
             f"- Load average: {env.get('load_average')}",
             f"- CPU governor: {', '.join(env.get('governors') or []) or 'not readable'}",
             f"- Thermal: {env.get('thermal_c') or 'not readable'}"]
    if env.get("nvpmodel"):
        lines.append(f"- Jetson power mode: {env['nvpmodel']}")
    lines += [f"- Warning: {w}" for w in env.get("warnings", [])]
    return lines + [""]


def _schedule_lines(schedules: dict | None) -> list[str]:
    if not schedules:
        return []
    lines = ["## Schedules", "", f"{schedules['kernels']} kernels, by where their schedule came from:", "",
             "| source | kernels |", "|---|---:|"]
    lines += [f"| {source} | {count} |" for source, count in schedules["by_source"].items()]
    lines.append("")
    if schedules.get("unscheduled"):
        lines += [f"**Unscheduled (TVM's naive loops):** {', '.join(schedules['unscheduled'])}", ""]
    if schedules.get("fallbacks"):
        lines += [f"Generic fallback only (parallel outer loops, no family rule): {', '.join(schedules['fallbacks'])}", ""]
    for kernel, reasons in (schedules.get("failures") or {}).items():
        lines.append(f"- rule failed on `{kernel}`: {'; '.join(reasons)}")
    if schedules.get("failures"):
        lines.append("")
    return lines
