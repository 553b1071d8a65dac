"""The one-screen summary at the top of report.md and report.html, and the one-line readings of each
figure that the summary and the detail sections share."""

from __future__ import annotations

from edgecc.reports.document import Bullets, Paragraph, Section, Table


def pct(value: float) -> str:
    return f"{value:.1f}%" if abs(value) < 10 else f"{value:.0f}%"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"


def megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.3g} MB"


def precision_label(report: dict) -> str:
    """The precision the layers got (report.json["precision"]), not merely the one asked for; older
    reports have only the option, and sparse attention named beside it."""
    applied = report.get("precision") or {}
    if applied.get("label"):
        return applied["label"]
    options = report.get("options") or {}
    text = options.get("precision") or "fp32"
    return text + (f" + sparse attention ({options['sparse_attention']})" if options.get("sparse_attention") else "")


def latency_line(report: dict) -> str:
    latency = report.get("latency") or {}
    edgecc = latency.get("edgecc")
    if latency.get("status") == "failed":
        return (
            f"**measurement failed** on {latency.get('where', 'the board')}: {latency.get('reason')} "
            "(the artifact passed verification and is kept; `edgecc bench` can time it again)"
        )
    if not edgecc:
        return "not measured" + (f" ({report['verification']['reason']})" if report.get("verification") else "")
    text = f"**{ms(edgecc['median_ms'])}** median on {latency.get('where', 'host')}"
    if latency.get("emulated"):
        return text + " (**emulated board**: says nothing about the real board's speed)"
    ort, ratio = latency.get("onnxruntime"), latency.get("ratio_vs_onnxruntime")
    if ort and ratio:
        how = (
            "interleaved rounds, same inputs and threads"
            if latency.get("interleaved")
            else "timed one after the other on the same inputs"
        )
        verdict = "faster" if ratio < 1 else "slower"
        text += (
            f"; ONNX Runtime {ms(ort['median_ms'])}: **{ratio:.2f}x** (edgecc {verdict}; {how}, "
            f"{latency.get('onnxruntime_threads', '?')} threads)"
        )
    return text


def correctness_line(report: dict) -> str:
    verification = report.get("verification") or {}
    accuracy = report.get("accuracy") or {}
    text = f"verification **{verification.get('status', '-')}**: {verification.get('reason', '')}".rstrip(": ")
    if accuracy.get("accuracy_drop") is not None:
        text += (
            f"; {precision_label(report)} accuracy drop "
            f"**{accuracy['accuracy_drop']:.3g}** ({accuracy.get('method', 'vs the FP32 reference')})"
        )
        if accuracy.get("top1_agreement") is not None:
            text += (
                f", top-1 agreement **{100 * accuracy['top1_agreement']:.1f} %** over {accuracy['top1_rows']} inputs"
            )
    elif accuracy.get("status") == "skipped":
        text += f"; accuracy not evaluated: {accuracy.get('reason')}"
    return text


def size_line(report: dict) -> str:
    artifact, model = report.get("artifact") or {}, report.get("model") or {}
    text = f"library {megabytes(artifact.get('library_bytes'))}"
    if model.get("weights_bytes"):
        text += f", weights {megabytes(model['weights_bytes'])}"
    if isinstance(model.get("parameters"), int):
        text += f" ({model['parameters'] / 1e6:.1f}M parameters)"
    return text


def energy_line(report: dict) -> str:
    energy = report.get("energy") or {}
    kind = energy.get("kind")
    if not energy or energy.get("status") == "skipped":
        return "not measured (the model did not run here)"
    if kind == "not measured":
        return f"not measured: {energy.get('why', '')}"
    joules = f"{energy['joules_per_inference']:.3g} J/inference above idle"
    if kind == "measured":
        return f"{joules}, measured with {energy['meter']} ({energy['avg_watts']:.3g} W average)"
    return f"**ESTIMATED** {joules}, from {energy.get('basis') or 'the target file'} (no power meter)"


def tuning_line(report: dict) -> str:
    """Applied vs tried-and-dropped, in words: 'tuned 3 of 12 kernels (9 tried, 6 lost ...)'."""
    tuning = report.get("tuning") or {}
    applied, compared, run = tuning.get("applied") or {}, tuning.get("compared_with_default"), tuning.get("run")
    tried, total = applied.get("tuned", 0), applied.get("kernels", 0)
    if tried:
        if compared:
            dropped = len(compared.get("kept_default") or [])
            text = (
                f"tuned {tried - dropped} of {total} kernels ({tried} tried, {dropped} lost to the default "
                f"schedule and were dropped)"
            )
        else:
            text = f"tuned {tried} of {total} kernels (not compared with the default schedules here)"
    elif applied:
        ignored = applied.get("records_other_targets", 0)
        text = f"not tuned: default schedules for all {total} kernels" + (
            f" ({ignored} records for other targets ignored)" if ignored else ""
        )
    else:
        text = "not tuned: default schedules"
    if applied.get("default_fastest"):
        text += (
            f"; {applied['default_fastest']} kernels keep their default schedule, which measured faster "
            "than their every tuned record"
        )
    if run:
        text += (
            f"; this compile ran {run.get('trials_run', 0)} trials in {run.get('wall_seconds', 0):.0f} s "
            f"(stopped by {run.get('stopped_by')})"
        )
        if run.get("default_ms_per_task"):
            text += (
                f", starting from {len(run['default_ms_per_task'])} measured default schedules "
                f"(its best trial beat {run.get('beat_default', 0)} of them)"
            )
        if run.get("skipped_for_budget"):
            text += (
                f" over the {run.get('tasks_tuned')} heaviest of {run.get('tasks')} kernels "
                f"({run.get('tuned_flop_share', 1.0):.0%} of the arithmetic; the budget had no time for the other "
                f"{len(run['skipped_for_budget'])})"
            )
        if run.get("not_searchable"):
            text += (
                f"; {len(run['not_searchable'])} kernel(s) the search could not take kept their default schedule "
                f"({', '.join(sorted(run['not_searchable']))})"
            )
    return text


def kernel_reason(kernel: dict, profile: dict) -> str:
    """Why a kernel takes the time it does, against the roof: 'memory-bound at 80% of bandwidth'."""
    bandwidth = profile.get("memory_bandwidth_gbs")
    if profile.get("emulated"):
        return "emulated board: timed, but not placed on the real board's roof"
    if kernel.get("bound") is None or not bandwidth:
        return (
            f"{kernel.get('achieved_gflops', 0):.1f} GFLOP/s, {kernel.get('achieved_gbs', 0):.1f} GB/s (no roof known)"
        )
    of_bandwidth = kernel.get("pct_of_peak_bandwidth", 100 * kernel.get("achieved_gbs", 0) / bandwidth)
    if kernel.get("flops", 0) == 0:
        text = f"moves data only, at {pct(of_bandwidth)} of the {bandwidth:g} GB/s bandwidth"
    elif kernel["bound"] == "memory":
        text = f"memory-bound at {pct(of_bandwidth)} of the {bandwidth:g} GB/s bandwidth"
    else:
        precision = kernel.get("precision", "fp32")
        peak = (profile.get("peaks_gflops") or {}).get(precision) or profile.get("peak_gflops")
        of_peak = kernel.get("pct_of_peak_compute", 100 * kernel.get("achieved_gflops", 0) / peak if peak else 0)
        text = f"compute-bound at {pct(of_peak)} of the {peak or 0:.0f} GFLOP/s {precision} peak"
    if kernel.get("above_roof"):
        text += " (" + kernel["above_roof"][0].split(":")[0] + ")"
    return text


def profile_check_line(profile: dict) -> str | None:
    """How far the kernels account for the end-to-end time, and what the rest is."""
    if profile.get("status") == "failed":
        return f"**not profiled**: {profile.get('reason')}"
    if profile.get("not_profiled"):  # no kernel could be timed: nothing can be said of the rest either
        return f"**not profiled** {profile['not_profiled']}"
    if not profile or not profile.get("end_to_end_ms"):
        return None
    ratio, e2e = profile["sum_over_end_to_end"], profile["end_to_end_ms"]
    text = f"kernels account for **{100 * ratio:.0f}%** of the {ms(e2e)} end to end"
    runtime = profile.get("runtime_calls")
    untimed = profile.get("skipped") or []
    if untimed and ratio < 1.0:  # the rest holds kernels that were never timed: not the runtime's work alone
        return text + (
            f"; the other {ms(e2e * (1 - ratio))} holds {len(untimed)} kernel(s) that could not be timed "
            f"({untimed[0]['reason']}), the runtime's own work and noise"
        )
    if ratio > 1.10:
        return text + (
            " (kernels timed inside the model ran slower than plain runs: the timing hook's presence or "
            "load from other work; no runtime overhead can be read off)"
            if runtime
            else " (kernels timed alone ran slower than inside the model: cold caches or load from other work)"
        )
    measured = (
        f"{ms(runtime['ms'])} measured inside its {runtime['calls_per_run']} allocation/view calls" if runtime else ""
    )
    if ratio >= 1.0:
        return (
            text
            + " (all of it, within timing noise)"
            + (f"; the runtime's own work, {measured}, is inside that noise" if runtime else "")
        )
    rest = e2e * (1 - ratio)
    if runtime:
        return text + (
            f"; the other {ms(rest)} is the runtime's own work: {measured}, the remaining "
            f"{ms(max(rest - runtime['ms'], 0))} dispatch between kernels and noise"
        )
    return text + f"; the other {ms(rest)} is the runtime's own work between kernels (dispatch, allocation) and noise"


def load_note(report: dict) -> str:
    """Other work on the machine makes whole runs slower in ways no single kernel shows: say how loaded it was."""
    env = report.get("environment") or {}
    load, cores = (env.get("load_average") or [None])[0], env.get("cpu_count")
    if load is None or not cores or load <= 0.5 * cores:
        return ""
    return f" (the machine was loaded, 1-min load {load:.1f} on {cores} cores: noise is most of the rest)"


def drift_note(report: dict) -> str:
    """When the profile's own end-to-end timing and the latency above disagree, say so: they were timed
    seconds apart, and a shared machine's speed moves in between."""
    latency = ((report.get("latency") or {}).get("edgecc") or {}).get("median_ms")
    e2e = (report.get("profile") or {}).get("end_to_end_ms")
    if not latency or not e2e or abs(e2e / latency - 1) <= 0.2:
        return ""
    return (
        f" (its own end-to-end timing, {ms(e2e)}, is {100 * abs(e2e / latency - 1):.0f}% "
        f"{'below' if e2e < latency else 'above'} the latency above: the machine's speed changed between the two)"
    )


def summary_section(report: dict) -> Section:
    profile = report.get("profile") or {}
    rows = [
        ["Latency", latency_line(report)],
        ["Correctness", correctness_line(report)],
        ["Size", size_line(report)],
        ["Energy", energy_line(report)],
        ["Tuning", tuning_line(report)],
    ]
    schedules = report.get("schedules") or {}
    if schedules:
        unscheduled = len(schedules.get("unscheduled") or [])
        rows.append(
            [
                "Schedules",
                f"{schedules['kernels']} kernels, {unscheduled} unscheduled"
                + (f", {len(schedules['failures'])} with a failed rule" if schedules.get("failures") else ""),
            ]
        )
    check = profile_check_line(profile)
    if check:
        rows.append(["Profile", check + load_note(report) + drift_note(report)])
    section = Section("Summary", anchor="summary", css="summary")
    section.add(Table(["", ""], rows, numeric=[False, False]))
    kernels = profile.get("kernels") or []
    if kernels:
        section.add(
            Paragraph("Slowest kernels:"),
            Bullets(
                [
                    f"`{k['name']}`: {100 * k.get('share', 0):.0f}% of kernel time ({ms(k['total_ms'])}, {k['calls']} "
                    f"call{'s' if k['calls'] != 1 else ''}): {kernel_reason(k, profile)}"
                    for k in kernels[:3]
                ],
                ordered=True,
            ),
        )
    warning = conditions_warning(report)
    if warning:
        section.add(Paragraph(warning, "warning"))
    return section


def conditions_warning(report: dict) -> str | None:
    """One line on how far the timings can be trusted: unstable runs, a busy or throttled machine."""
    latency, env = report.get("latency") or {}, report.get("environment") or {}
    parts = [
        f"{name} CV {latency[name]['cv']:.2f}"
        for name in ("edgecc", "onnxruntime")
        if (latency.get(name) or {}).get("unstable")
    ]
    text = f"Timings are unstable ({', '.join(parts)})" if parts else ""
    other = [w for w in env.get("warnings") or [] if "unstable" not in w]
    if other:
        text = (text + "; " if text else "") + "; ".join(other)
    return (
        (
            text + ": side-by-side ratios share the load, but two runtimes can suffer from it differently, "
            "so re-measure on an idle machine before acting on them."
        )
        if text
        else None
    )
