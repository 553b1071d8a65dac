"""Tuning starts from the default schedule, and a tuned record is used only where it beat it.

Before the first batch, each kernel given to the search has its default schedule (the backend's
`kernel_schedule`) built and timed by the search's own builder and runner: on this machine, or on
the board when tuning over RPC. That measurement goes into the search's database as its first
record, so MetaSchedule's best-so-far, and with it the progress estimate, starts at the default.
It also goes into the log, marked `"schedule": "default"` (with an empty trace: its latency is what
counts), so a later compile (apply.py) takes a tuned record only where it measured faster than the
default on the same target. Without it, a short search on a board could leave a kernel slower
than untuned, and only a compile on the host itself could notice (prefer_faster.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgecc.errors import error_line
from edgecc.tuning.records import DEFAULT_SCHEDULE, make_record


@dataclass
class DefaultBaseline:
    ms_per_task: dict = field(default_factory=dict)  # task index -> the default schedule's milliseconds
    records: list = field(default_factory=list)  # the log records of those measurements
    not_measured: dict = field(default_factory=dict)  # kernel name -> why its default has no measurement


def measure_default_schedules(extracted, constants, backend, target, builder, runner, database, board):
    """Build, time (on `backend.device`) and commit to `database` the default schedule (the
    backend's `kernel_schedule`) of every task in `extracted`."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.schedule import Trace

    baseline = DefaultBaseline()
    tvm_target = target.tvm()
    candidates = []
    for index, task in enumerate(extracted):
        name = task.task_name
        try:
            sch = backend.kernel_schedule(task.dispatched[0]["main"], name, target, constants.get(name, ()))
        except Exception as exc:  # noqa: BLE001 - a rule that raises leaves the search without a bar
            baseline.not_measured[name] = f"its default schedule failed: {error_line(exc, last=True, limit=160)}"
            continue
        if sch is None:
            baseline.not_measured[name] = "no default schedule rule takes it"
            continue
        candidates.append((index, task, sch))
    if not candidates:
        return baseline
    built = builder.build([ms.builder.BuilderInput(sch.mod, tvm_target) for _, _, sch in candidates])
    inputs, timed = [], []
    for (index, task, sch), result in zip(candidates, built):
        if result.error_msg:
            baseline.not_measured[task.task_name] = f"build: {error_line(result.error_msg, last=True, limit=160)}"
            continue
        args_info = ms.arg_info.ArgInfo.from_prim_func(sch.mod["main"])
        inputs.append(ms.runner.RunnerInput(result.artifact_path, backend.device, args_info))
        timed.append((index, task, sch, args_info))
    for (index, task, sch, args_info), future in zip(timed, runner.run(inputs)):
        ran = future.result()
        seconds = [float(s) for s in ran.run_secs or ()]
        latency = sum(seconds) / len(seconds) if seconds else math.nan
        if ran.error_msg or not (math.isfinite(latency) and latency > 0):
            why = error_line(ran.error_msg, last=True, limit=160) if ran.error_msg else "no timings"
            baseline.not_measured[task.task_name] = f"run: {why}"
            continue
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(
            ms.database.TuningRecord(sch.trace, workload, ran.run_secs, tvm_target, args_info)
        )
        baseline.ms_per_task[index] = latency * 1e3
        # TVM cannot write a trace that repacks a weight (an IndexMap) as JSON; the log's default record
        # needs none: a compile derives the default schedule afresh and only reads this one's latency
        logged = ms.database.TuningRecord(Trace([], {}), workload, ran.run_secs, tvm_target, args_info)
        baseline.records.append(
            make_record(workload.as_json(), logged.as_json(), tvm_target, board, latency, schedule=DEFAULT_SCHEDULE)
        )
    return baseline
