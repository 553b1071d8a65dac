"""The detail sections of the report, each a readable table or two built from one part of report.json."""

from __future__ import annotations

from edgecc.reports.document import Bullets, Paragraph, Plot, Section, Table, cell
from edgecc.reports.summary import energy_line, kernel_reason, megabytes, ms, profile_check_line, tuning_line

TOP_KERNELS = 20
LONG_TABLE = 12  # a nested table of numbers longer than this is summarised in one row
V1_PROFILE_NOTE = (
    "This report.json is schema v1: its kernels were timed alone and its bytes count whole argument "
    "buffers (an embedding lookup counts its whole table), so figures above 100% of the roof are "
    "counting artefacts. Compile again for footprint-counted bytes and in-model timings."
)


def flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, scalar) pairs of a nested dict; lists of scalars joined, lists of dicts left to tables."""
    rows = []
    for key, item in (value or {}).items():
        name = f"{prefix}{key}"
        if (
            isinstance(item, dict)
            and len(item) > LONG_TABLE
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item.values())
        ):
            values = sorted(item.values())  # e.g. one error per layer, keyed by hash: a summary reads better
            rows.append(
                (
                    name,
                    f"{len(values)} values: min {cell(float(values[0]))}, median "
                    f"{cell(float(values[len(values) // 2]))}, max {cell(float(values[-1]))} "
                    "(each in report.json)",
                )
            )
        elif isinstance(item, dict):
            rows += flatten(item, name + ".") if item else [(name, "-")]
        elif isinstance(item, (list, tuple)) and item and all(isinstance(i, dict) for i in item):
            continue
        elif isinstance(item, (list, tuple)):
            rows.append((name, cell(list(item))))
        else:
            rows.append((name, item))
    return rows


def record_tables(value: dict) -> list[Table]:
    """Each list of records inside `value` as its own table, columns from the records' keys."""
    tables = []
    for key, item in (value or {}).items():
        if isinstance(item, (list, tuple)) and item and all(isinstance(i, dict) for i in item):
            columns = list(dict.fromkeys(k for record in item for k in record))
            tables.append(Table(columns, [[record.get(c) for c in columns] for record in item], caption=key))
        elif isinstance(item, dict):
            tables += record_tables(item)
    return tables


def key_value_section(title: str, value: dict, intro: str = "") -> Section | None:
    if not value:
        return None
    section = Section(title)
    if intro:
        section.add(Paragraph(intro))
    rows = flatten(value)
    if rows:
        section.add(Table(["", "value"], [[k, v] for k, v in rows], numeric=[False, False]))
    return section.add(*record_tables(value))


def latency_section(report: dict) -> Section | None:
    latency = report.get("latency") or {}
    if not latency.get("edgecc"):
        return None
    section = Section("Latency")
    if latency.get("emulated"):
        section.add(
            Paragraph("Emulated board (QEMU): these timings say nothing about the real board's speed.", "warning")
        )
    how = (
        "in interleaved rounds (edgecc, ONNX Runtime, edgecc, ...) on the same inputs"
        if latency.get("interleaved")
        else "one after the other on the same inputs"
    )
    section.add(
        Paragraph(f"Measured on {latency.get('where', 'host')}, batch {report['options'].get('batch')}, {how}.")
    )
    rows = []
    for name in ("edgecc", "onnxruntime"):
        s = latency.get(name)
        if s:
            rows.append(
                [
                    name,
                    f"{s['median_ms']:.3f}",
                    f"{s['min_ms']:.3f}",
                    f"{s['p90_ms']:.3f}",
                    f"{s['p99_ms']:.3f}",
                    f"{s['std_ms']:.3f}",
                    f"{s['cv']:.3f}",
                    s["runs"],
                ]
            )
    section.add(Table(["runtime", "median ms", "min ms", "p90 ms", "p99 ms", "std ms", "CV", "runs"], rows))
    if latency.get("ratio_vs_onnxruntime"):
        spread = latency.get("ratio_spread")
        section.add(
            Paragraph(
                f"edgecc / ONNX Runtime median latency: **{latency['ratio_vs_onnxruntime']:.2f}x**"
                + (f" (rounds' interquartile range {spread[0]:.2f}-{spread[1]:.2f}x)" if spread else "")
                + " (below 1 means edgecc is faster)."
            )
        )
    return section.add(*[Paragraph(w, "warning") for w in latency.get("warnings", [])])


def verification_section(report: dict) -> Section:
    verification = report["verification"]
    section = Section("Verification").add(
        Paragraph(f"Status: **{verification['status']}**: {verification.get('reason', '')}")
    )
    details = [[k, verification[k]] for k in ("reference", "tolerance", "where", "inputs") if verification.get(k)]
    if details:
        section.add(Table(["", ""], details, numeric=[False, False]))
    if verification.get("outputs"):
        section.add(
            Table(
                ["output", "shape", "max abs error", "max rel error"],
                [
                    [
                        r["name"],
                        "x".join(map(str, r["shape"])),
                        f"{r['max_abs_error']:.3g}",
                        f"{r['max_rel_error']:.3g}",
                    ]
                    for r in verification["outputs"]
                ],
            )
        )
    return section


def tuning_section(report: dict) -> Section | None:
    tuning = report.get("tuning") or {}
    if not tuning:
        return None
    section = Section("Tuning").add(Paragraph(tuning_line(report) + "."))
    run = tuning.get("run")
    if run:
        section.add(
            Table(
                ["this compile's search", ""],
                [
                    [k, run.get(k)]
                    for k in (
                        "tasks",
                        "tasks_tuned",
                        "tuned_flop_share",
                        "trials_before",
                        "trials_run",
                        "beat_default",
                        "build_failures",
                        "run_failures",
                        "wall_seconds",
                        "stopped_by",
                        "log_path",
                    )
                    if k in run
                ],
                numeric=[False, False],
            )
        )
        section.add(Plot("Tuning curve", "Best estimated total kernel time as trials accumulate."))
        if run.get("first_errors"):
            section.add(Paragraph("First errors:"), Bullets([f"`{e}`" for e in run["first_errors"]]))
    applied = tuning.get("applied")
    if applied:
        section.add(
            Table(
                ["records", ""],
                [
                    [k, applied.get(k)]
                    for k in ("kernels", "tuned", "default", "records_for_target", "records_other_targets", "bad_lines")
                    if k in applied
                ]
                + [["files", ", ".join(applied.get("files") or []) or "-"]],
                numeric=[False, False],
            )
        )
    compared = tuning.get("compared_with_default")
    if compared and compared.get("kernels"):
        section.add(
            Table(
                ["kernel", "tuned us", "default us", "kept"],
                [[k["name"], k["tuned_us"], k["default_us"], k["kept"]] for k in compared["kernels"]],
                caption="Each tuned kernel timed against its default schedule here; the faster is kept.",
            )
        )
    return section


def energy_section(report: dict) -> Section | None:
    energy = report.get("energy") or {}
    if not energy:
        return None
    section = Section("Energy").add(Paragraph(energy_line(report) + "."))
    if energy.get("kind") in ("measured", "estimated"):
        rate = energy.get("sample_rate_hz")
        section.add(
            Table(
                [
                    "J/inference (above idle)",
                    "J/inference (total)",
                    "avg W",
                    "peak W",
                    "idle W",
                    "sample rate",
                    "rails",
                ],
                [
                    [
                        f"{energy['joules_per_inference']:.4g}",
                        f"{energy.get('joules_per_inference_total', 0):.4g}",
                        f"{energy['avg_watts']:.3g}",
                        f"{energy['peak_watts']:.3g}",
                        f"{energy.get('idle_watts') or 0:.3g}",
                        "-" if rate is None else f"{rate:.1f} Hz",
                        ", ".join(energy.get("rails") or []) or "-",
                    ]
                ],
            )
        )
    return section


def profile_section(report: dict) -> Section | None:
    profile = report.get("profile") or {}
    if not profile.get("kernels"):
        return None
    section = Section("Per-kernel profile", anchor="profile")
    if report.get("schema_version", 2) < 2:
        section.add(Paragraph(V1_PROFILE_NOTE, "note"))
    check = profile_check_line(profile)
    if check:
        section.add(Paragraph(check + f" (medians over {profile.get('rounds', 1)} rounds)."))
    peaks = profile.get("peaks_gflops") or {"fp32": profile.get("peak_gflops")}
    section.add(
        Paragraph(
            "Roof: "
            + ", ".join(f"{p} {v:g} GFLOP/s" for p, v in peaks.items() if v)
            + f", memory {profile.get('memory_bandwidth_gbs')} GB/s"
            + (f", on-chip cache {megabytes(profile['cache_bytes'])}" if profile.get("cache_bytes") else "")
            + " (where these come from: Machine, below)."
        )
    )
    from edgecc.reports.plots import roofline_key

    section.add(
        Plot("Per-kernel time", "The slowest kernels; hatched: a figure above the roof (reasons below)."),
        Plot("Roofline", roofline_key(report)),
    )
    rows = []
    for k in profile["kernels"][:TOP_KERNELS]:
        rows.append(
            [
                f"`{k['name']}`",
                k["calls"],
                f"{k['total_ms']:.3f}",
                f"{100 * k.get('share', 0):.1f}%",
                f"{k['flops'] / 1e9:.3g}",
                f"{k['bytes'] / 1e6:.3g}",
                f"{k['arithmetic_intensity']:.2f}",
                f"{k['achieved_gflops']:.1f}",
                f"{k['achieved_gbs']:.1f}",
                kernel_reason(k, profile),
            ]
        )
    section.add(
        Table(["kernel", "calls", "ms", "share", "GFLOP", "MB", "FLOP/B", "GFLOP/s", "GB/s", "against the roof"], rows)
    )
    if len(profile["kernels"]) > TOP_KERNELS:
        section.add(
            Paragraph(f"{len(profile['kernels']) - TOP_KERNELS} smaller kernels not shown; all are in report.json.")
        )
    if profile.get("families"):
        section.add(Paragraph("By kernel family (where each kernel's schedule came from):"))
        section.add(
            Table(
                ["schedule", "kernels", "calls", "ms", "GFLOP/s", "of the peak"],
                [
                    [
                        f"`{f['schedule']}`",
                        f["kernels"],
                        f["calls"],
                        f"{f['total_ms']:.3f}",
                        f"{f['achieved_gflops']:.1f}",
                        _share_of_peak(f),
                    ]
                    for f in profile["families"]
                ],
            )
        )
    flagged = [k for k in profile["kernels"] if k.get("above_roof")]
    if flagged:
        section.add(
            Paragraph("Figures above 100% of the roof, and why:"),
            Bullets([f"`{k['name']}`: {'; '.join(k['above_roof'])}" for k in flagged]),
        )
    section.add(Paragraph(f"How it was timed: {profile.get('method', '-')}.", "note"))
    if profile.get("counting"):
        section.add(Paragraph(f"How operations and bytes are counted: {profile['counting']}", "note"))
    for skipped in profile.get("skipped", []):
        section.add(Paragraph(f"Not profiled: `{skipped['name']}`: {skipped['reason']}", "warning"))
    return section


def _share_of_peak(family: dict) -> str:
    share = family["pct_of_peak_compute"]
    return "-" if share is None else f"{share:.0f}% of {family['precision']}"


def schedules_section(report: dict) -> Section | None:
    schedules = report.get("schedules") or {}
    if not schedules:
        return None
    section = Section("Schedules").add(Paragraph(f"{schedules['kernels']} kernels, by where their schedule came from:"))
    section.add(Table(["source", "kernels"], [[f"`{s}`", n] for s, n in schedules["by_source"].items()]))
    if schedules.get("unscheduled"):
        section.add(
            Paragraph(
                "Unscheduled (TVM's naive loops): " + ", ".join(f"`{k}`" for k in schedules["unscheduled"]), "warning"
            )
        )
    if schedules.get("fallbacks"):
        section.add(
            Paragraph(
                "Generic fallback only (parallel outer loops, no family rule): "
                + ", ".join(f"`{k}`" for k in schedules["fallbacks"])
            )
        )
    failures = schedules.get("failures") or {}
    if failures:
        section.add(
            Table(["kernel", "rule that raised, and why"], [[f"`{k}`", "; ".join(v)] for k, v in failures.items()])
        )
    return section


def passes_section(report: dict) -> Section | None:
    from edgecc.reports.precision import is_precision_pass

    passes = report.get("passes") or {}
    if not passes:
        return None
    rows = [
        [
            f"`{name}`",
            "see Precision below"
            if is_precision_pass(stats)
            else ", ".join(f"{k.replace('_', ' ')}: {cell(v)}" for k, v in flatten(stats)) or "-",
        ]
        for name, stats in passes.items()
    ]
    return Section("Graph passes").add(Table(["pass", "what it did"], rows, numeric=[False, False]))


def machine_section(report: dict) -> Section:
    target = report["target"]
    board = target.get("board") or {}
    rows = [
        ["target", f"{target['name']}: {target.get('description', '')}"],
        ["CPU / SoC", board.get("soc") or "-"],
        ["LLVM CPU", (target.get("tvm_target") or {}).get("mcpu", "-")],
        ["cores", board.get("cores")],
        ["compute peaks", ", ".join(f"{p} {v:g} GFLOP/s" for p, v in (board.get("peak_gflops") or {}).items())],
        ["memory bandwidth", f"{board.get('memory_bandwidth_gbs')} GB/s"],
    ]
    if board.get("cache_bytes"):
        rows.append(["on-chip cache", megabytes(board["cache_bytes"])])
    if board.get("tdp_watts") is not None:
        rows.append(
            ["power figures", f"TDP {board['tdp_watts']:g} W, idle {board.get('idle_watts'):g} W (target file)"]
        )
    section = Section("Machine").add(Table(["", ""], rows, numeric=[False, False]))
    sources = board.get("sources") or {}
    if sources:
        section.add(
            Paragraph("Where each figure comes from:"),
            Table(["figure", "source"], [[k, v] for k, v in sources.items()], numeric=[False, False]),
        )
    elif target["name"] == "host":
        section.add(
            Paragraph(
                "This report predates measured host facts: its peak and bandwidth came from fixed assumptions.", "note"
            )
        )
    return section


def environment_section(report: dict) -> Section | None:
    env = report.get("environment")
    if not env:
        return None
    rows = [
        ["machine", f"{env.get('processor') or env['machine']} ({env['cpu_count']} CPUs)"],
        ["load average", ", ".join(f"{v:.2f}" for v in env.get("load_average") or []) or "-"],
        ["CPU governor", ", ".join(env.get("governors") or []) or "not readable"],
        ["thermal", ", ".join(f"{k} {v:.0f} C" for k, v in (env.get("thermal_c") or {}).items()) or "not readable"],
    ]
    if env.get("nvpmodel"):
        rows.append(["Jetson power mode", env["nvpmodel"]])
    section = Section("Environment").add(Table(["", ""], rows, numeric=[False, False]))
    return section.add(*[Paragraph(w, "warning") for w in env.get("warnings", [])])


def artifact_section(report: dict) -> Section:
    artifact = report["artifact"]
    section = Section("Artifact").add(Table(["file", "bytes"], [[n, i["bytes"]] for n, i in artifact["files"].items()]))
    section.add(Paragraph(f"Library: `{artifact['library']}`. {artifact.get('load', '')}".strip()))
    contents = [f"{k}: {v}" for k, v in (artifact.get("contents") or {}).items()]
    contents += [f"**missing to run it:** {item}" for item in artifact.get("missing") or []]
    return section.add(Bullets(contents) if contents else None)


def compile_section(report: dict) -> Section:
    steps = report["compile"].get("steps") or []
    return Section("Compile").add(
        Table(
            ["step", "seconds"],
            [[s["name"], f"{s['seconds']:.2f}"] for s in steps]
            + [["total", f"{report['compile']['total_seconds']:.2f}"]],
        )
    )


def detail_sections(report: dict) -> list[Section]:
    from edgecc.buckets.report import buckets_section
    from edgecc.reports.precision import precision_section

    builders = (
        latency_section,
        buckets_section,
        verification_section,
        profile_section,
        tuning_section,
        energy_section,
        schedules_section,
        passes_section,
        precision_section,
        machine_section,
        environment_section,
        artifact_section,
        compile_section,
    )
    sections = [build(report) for build in builders]
    accuracy = key_value_section("Accuracy", report.get("accuracy") or {})
    if accuracy is not None:
        sections.insert(2, accuracy)
    return [s for s in sections if s is not None]


__all__ = ["detail_sections", "ms", "TOP_KERNELS"]
