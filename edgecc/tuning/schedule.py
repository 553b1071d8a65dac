"""The compile's schedule step: tune if asked, apply this target's records, keep whichever of tuned
and default is faster here, then default schedules for every kernel left."""

from __future__ import annotations

from pathlib import Path


def own_log_dir(options, target) -> Path:
    """Where this compile's tuning appends its records: TUNING_LOGS/<target name>/."""
    root = Path(options.tuning_logs[0]) if options.tuning_logs else Path("tuning_logs")
    return root / target.name


def tuning_log_dirs(options, target) -> list[Path]:
    roots = [Path(p) for p in options.tuning_logs] or [Path("tuning_logs")]
    dirs = []
    for root in roots:
        candidate = root / target.name
        if candidate.is_dir():
            dirs.append(candidate)
        elif root.is_dir() and any(root.glob("*.jsonl")):
            dirs.append(root)
    return dirs


def remote_spec(options) -> dict | None:
    if not (options.rpc or options.tracker):
        return None
    return {"rpc": options.rpc, "tracker": options.tracker, "key": options.key, "timeout": options.rpc_timeout}


def schedule_module(lowered, target, backend, options, log=print):
    """(scheduled module, report.json["tuning"])."""
    from edgecc.tuning import apply_tuning_records, tune

    tuning: dict = {}
    if options.tune:
        result = tune(
            lowered,
            target,
            own_log_dir(options, target),
            trials=options.trials,
            budget_s=options.budget_seconds,
            session=remote_spec(options),
            progress=not options.quiet,
            backend=backend,
        )
        tuning["run"] = result.to_dict()
    mod = lowered
    log_dirs = tuning_log_dirs(options, target)
    if log_dirs:
        mod, summary = apply_tuning_records(mod, target, log_dirs)
        tuning["applied"] = summary.to_dict()
        for line in summary.skipped:
            log(f"      skipped tuning log line {line}")
        if summary.tuned and target.capabilities.runs_on_host and not remote_spec(options):
            mod, tuning["compared_with_default"] = _keep_faster_of_tuned_and_default(lowered, mod, target, backend, log)
    return backend.default_schedule(mod, target), tuning


def _keep_faster_of_tuned_and_default(lowered, tuned, target, backend, log):
    from tvm.tirx import PrimFunc

    from edgecc.schedules.common import is_scheduled
    from edgecc.tuning.prefer_faster import prefer_faster_schedules

    names = [
        gv.name_hint
        for gv, func in lowered.functions.items()
        if isinstance(func, PrimFunc) and not is_scheduled(func) and is_scheduled(tuned[gv.name_hint])
    ]
    log(f"timing {len(names)} tuned kernels against their default schedules ...")
    mod, comparison = prefer_faster_schedules(tuned, lowered, target, backend.default_schedule, names)
    return mod, comparison.to_dict()
