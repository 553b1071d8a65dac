"""MetaSchedule tuning with the XGBoost cost model, a trial and a time budget, resume from the log,
and every measured schedule appended to the shared log as it arrives."""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from edgecc.errors import EdgeccError, error_line
from edgecc.interrupts import check as check_stop
from edgecc.tuning.progress import ProgressBar
from edgecc.tuning.record_checks import workload_key
from edgecc.tuning.records import LOG_NAME, append_records, make_record, read_logs, target_key


@dataclass
class TuneResult:
    log_path: str
    tasks: int = 0
    trials_before: int = 0
    trials_run: int = 0
    build_failures: int = 0
    run_failures: int = 0
    first_errors: list = field(default_factory=list)  # the first few build/run errors, one line each
    wall_seconds: float = 0.0
    stopped_by: str = "trials"
    tasks_tuned: int = 0  # kernels given to the search (the rest keep their default schedule)
    skipped_for_budget: list = field(default_factory=list)  # kernel names left out to fit the budget
    tuned_flop_share: float = 1.0  # of the model's arithmetic (calls x ops per call) in the tuned kernels
    curve: list = field(default_factory=list)  # [trials so far, estimated total kernel ms]
    best_ms_per_task: dict = field(default_factory=dict)  # the default schedule's until a trial beats it
    default_ms_per_task: dict = field(default_factory=dict)  # each tuned kernel's default schedule, measured first
    default_remeasured: int = 0  # trials that were the default schedule again (logged once, by the baseline)
    defaults_not_measured: dict = field(default_factory=dict)  # kernel name -> why (no bar for its search)
    not_searchable: dict = field(default_factory=dict)  # kernel name -> why the search cannot take it

    @property
    def beat_default(self) -> int:
        """Kernels whose best trial measured faster than their default schedule."""
        return sum(self.best_ms_per_task.get(t, math.inf) < ms for t, ms in self.default_ms_per_task.items())

    def to_dict(self) -> dict:
        return {**asdict(self), "beat_default": self.beat_default}


class TuningError(EdgeccError):
    """A tuning run that could not measure anything."""


class BudgetSpent(Exception):
    """Raised from the builder or the callback to end the search between batches. Terminating tasks
    from a callback instead trips MetaSchedule's own checks when a task still has measurements in
    flight; everything measured so far is already in the log."""


_LAYOUT_INSTRUCTIONS = frozenset({"TransformLayout", "TransformBlockLayout"})


def repacks_weights(trace) -> bool:
    """Whether a schedule's trace changes a buffer's layout (an IndexMap, which TVM's JSON cannot hold)."""
    return any(inst.kind.name in _LAYOUT_INSTRUCTIONS for inst in trace.insts)


@derived_object
class RecordAndReport(PyMeasureCallback):
    """After each batch: append the measured schedules to the log, print progress, enforce the budget."""

    def __init__(
        self, log_path, tvm_target, board, result: TuneResult, total_trials, budget_s, weights, progress, started
    ):
        super().__init__()
        self.log_path, self.tvm_target, self.board = Path(log_path), tvm_target, board
        self.result, self.total_trials, self.budget_s = result, total_trials, budget_s
        self.weights, self.progress = weights, progress
        self.started = started  # the budget covers the whole run, task extraction included
        self.workloads: dict[int, object] = {}
        self.submitted = 0
        self.estimate = estimated_total(weights, result.best_ms_per_task)  # the defaults', when measured first
        self.bar = ProgressBar(total_trials)

    def budget_spent(self) -> bool:
        return self.budget_s is not None and time.monotonic() - self.started >= self.budget_s

    def before_build(self, count: int) -> bool:
        """Called by the builder for every batch. MetaSchedule joins measurements only after a first
        round over all kernels, so this is what shows progress and keeps the budget during that
        round. That first round always completes (its measurements are joined only at its end, and
        stopping inside it would throw them away), so a budget shorter than it overshoots by it."""
        check_stop()  # a signal a library swallowed (the builder keeps going past a failed candidate)
        if self.result.trials_run and self.budget_spent():
            self.result.stopped_by = "time budget"
            raise BudgetSpent()
        self.submitted += count
        self._print(time.monotonic() - self.started, self.estimate)
        return False

    def _workload(self, scheduler, task_id):
        from tvm.s_tir import meta_schedule as ms

        if task_id not in self.workloads:
            self.workloads[task_id] = ms.database.Workload(scheduler.tasks_[task_id].ctx.mod)
        return self.workloads[task_id]

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        from tvm.s_tir import meta_schedule as ms

        workload = self._workload(task_scheduler, task_id)
        records = []
        for candidate, built, ran in zip(measure_candidates, builder_results, runner_results):
            self.result.trials_run += 1
            if built.error_msg:
                self.result.build_failures += 1
                self._note_error("build", built.error_msg)
                continue
            if ran.error_msg or not ran.run_secs:
                self.result.run_failures += 1
                self._note_error("run", ran.error_msg or "no timings")
                continue
            seconds = [float(s) for s in ran.run_secs]
            latency = sum(seconds) / len(seconds)
            if not math.isfinite(latency) or latency <= 0:  # never let a bogus timing become the best record
                self.result.run_failures += 1
                self._note_error("run", f"measured latency {latency!r} is not a finite time > 0")
                continue
            best = self.result.best_ms_per_task.get(str(task_id))
            if best is None or latency * 1e3 < best:
                self.result.best_ms_per_task[str(task_id)] = latency * 1e3
            if repacks_weights(candidate.sch.trace):
                # Only a default schedule repacks weights, and the search sometimes measures the one
                # it was seeded with again; TVM cannot write its IndexMap as JSON, and the baseline
                # has logged that schedule already.
                self.result.default_remeasured += 1
                continue
            tvm_record = ms.database.TuningRecord(
                candidate.sch.trace, workload, ran.run_secs, self.tvm_target, candidate.args_info
            )
            records.append(make_record(workload.as_json(), tvm_record.as_json(), self.tvm_target, self.board, latency))
        append_records(self.log_path, records)
        self.estimate = estimate = estimated_total(self.weights, self.result.best_ms_per_task)
        self.result.curve.append([self.result.trials_before + self.result.trials_run, estimate])
        self._print(time.monotonic() - self.started, estimate)
        # No raise here: MetaSchedule joins every running task in a row, and raising from this one
        # would drop the others' measurements; the next batch's build ends the search instead.

    def _note_error(self, stage: str, message: str) -> None:
        if len(self.result.first_errors) < 3:
            lines = [line.strip() for line in str(message).splitlines() if line.strip()]
            self.result.first_errors.append(f"{stage}: {' | '.join(lines[-2:])[:300]}")

    def _print(self, elapsed, estimate):
        if not self.progress:
            return
        line = self.bar.line(
            time.monotonic(),
            self.submitted,
            self.result.trials_run,
            estimate,
            self.result.build_failures + self.result.run_failures,
            self.budget_s,
            elapsed,
        )
        sys.stderr.write("\r" + line + " ")
        sys.stderr.flush()


# Built in-process and measured on 2 cores: BERT kernels ~1 s per candidate (158 in 169 s),
# MobileViT's convolutions ~3 s (0.3 per second at batches of 4). Budgets are planned for the slower.
SECONDS_PER_CANDIDATE = 3.0
MIN_BATCH = 4


def batch_size(trials: int, tasks: int, budget_s: float | None) -> int:
    """The gradient scheduler gives one task a whole batch at a time, and joins measurements only
    after a first round of one batch per task: small batches let a small budget reach every kernel
    and see measurements. With a budget, that first round takes about half of it at
    SECONDS_PER_CANDIDATE (a 70-kernel vision model with batches of 28 would wait ~33 minutes for
    its first measurement)."""
    size = max(MIN_BATCH, min(32, trials // max(tasks, 1)))
    if budget_s is not None:
        first_round = budget_s / (2 * SECONDS_PER_CANDIDATE * max(tasks, 1))
        size = min(size, max(MIN_BATCH, int(budget_s / 8)), max(MIN_BATCH, int(first_round)))  # a batch: ~1/8 of it
    return size


def tasks_for_budget(budget_s: float | None) -> int | None:
    """How many kernels a budget can tune: a first round of MIN_BATCH candidates each within half
    of it (None: no limit). The first round cannot be cut short, so a 10-minute budget over
    MobileViT's 70 kernels would otherwise run ~15 minutes before joining any measurement."""
    if budget_s is None:
        return None
    return max(1, int(budget_s / (2 * SECONDS_PER_CANDIDATE * MIN_BATCH)))


def heaviest_tasks(extracted, limit: int | None):
    """(the `limit` kernels with the most arithmetic per model run, the others' names, their share
    of it): what a budget too short for every kernel tunes; the rest keep their default schedule."""
    from edgecc.measure.counting import count_flops

    if limit is None or limit >= len(extracted):  # all of them: nothing to rank
        return list(extracted), [], 1.0
    work = [max(int(task.weight), 1) * count_flops(task.dispatched[0]["main"]) for task in extracted]
    order = sorted(range(len(extracted)), key=lambda i: -work[i])
    kept = sorted(order[:limit])
    skipped = [extracted[i].task_name for i in order[len(kept) :]]
    share = sum(work[i] for i in kept) / sum(work) if sum(work) else 1.0
    return [extracted[i] for i in kept], skipped, share


def tune(
    mod,
    target,
    log_dir: Path,
    trials: int,
    budget_s: float | None = None,
    session: dict | None = None,
    progress: bool = True,
    max_trials_per_task: int | None = None,
    backend=None,
) -> TuneResult:
    """`backend`: the target's Backend, whose `kernel_schedule` of each kernel is measured first, on
    its `device`, and is the bar (default_baseline.py); None, or a backend without one: the search
    starts from nothing."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks, extracted_tasks_to_tune_contexts

    from edgecc.schedules.common import is_scheduled
    from edgecc.tuning.apply import _database_for
    from edgecc.tuning.intrinsics import only_target_intrinsics
    from edgecc.tuning.records import best_records
    from edgecc.tuning.runners import make_runner

    # MetaSchedule's per-batch INFO lines would drown the progress bar.
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    started = time.monotonic()
    log_dir = Path(log_dir)
    log_path = log_dir / LOG_NAME
    tvm_target = target.tvm()
    key = target_key(tvm_target)
    runner = make_runner(session)  # a bad board spec fails before any work
    with tvm_target:
        extracted = extract_tasks(mod, tvm_target)
    # A graph pass's own kernels (fused attention) are built scheduled and no record replaces them
    extracted = [task for task in extracted if not is_scheduled(task.dispatched[0]["main"])]
    # Resume counts only this model's kernels on this target: another model's records in the same
    # folder must not use up this model's trial budget.
    kernels = {workload_key(ms.database.Workload(task.dispatched[0]).as_json()) for task in extracted}
    prior = [  # trials; defaults are measured afresh each run
        r
        for r in read_logs([log_dir]).records
        if r.data["target"] == key and r.data["workload_key"] in kernels and not r.is_default
    ]
    result = TuneResult(str(log_path), tasks=len(extracted), trials_before=len(prior))
    remaining = trials - len(prior)
    if remaining <= 0:
        result.stopped_by = f"already {len(prior)} trials in the log"
        return result
    if not extracted:
        return result
    extracted, result.skipped_for_budget, result.tuned_flop_share = heaviest_tasks(
        extracted, tasks_for_budget(budget_s)
    )
    if result.skipped_for_budget and progress:
        sys.stderr.write(
            f"tuning the {len(extracted)} heaviest of {result.tasks} kernels "
            f"({result.tuned_flop_share:.0%} of the arithmetic) to fit the budget; "
            f"{len(result.skipped_for_budget)} keep their default schedule\n"
        )
    with tempfile.TemporaryDirectory(prefix="edgecc-tune-") as work_dir, only_target_intrinsics(tvm_target):
        contexts, weights = extracted_tasks_to_tune_contexts(
            extracted, work_dir=work_dir, strategy="evolutionary", space="post-order-apply", seed=0
        )
        extracted, contexts, weights = _searchable(extracted, contexts, weights, result)
        if not contexts:
            _say_not_searchable(result, progress)
            result.stopped_by = "no kernel the search can take"
            result.wall_seconds = time.monotonic() - started
            return result
        database = _database_for(best_records(prior).values()) if prior else ms.database.MemoryDatabase()
        if backend is not None and backend.kernel_schedule is not None:
            _start_from_default_schedules(
                mod, extracted, backend, target, session, work_dir, runner, database, result, weights, progress
            )
        callback = RecordAndReport(
            log_path,
            tvm_target,
            target.name,
            result,
            remaining,
            budget_s,
            [float(w) for w in weights],
            progress,
            started,
        )
        try:
            _tune_tasks(
                ms,
                contexts,
                weights,
                work_dir,
                remaining,
                max_trials_per_task,
                budget_s,
                target,
                session,
                runner,
                database,
                callback,
            )
        except Exception:
            if result.stopped_by != "time budget":
                raise
    if progress:
        sys.stderr.write("\n")
    _say_not_searchable(result, progress)
    result.wall_seconds = time.monotonic() - started
    _require_measurements(result, session)
    return result


def _searchable(extracted, contexts, weights, result: TuneResult):
    """The tasks whose MetaSchedule design space can be generated (and `result.tasks_tuned`, their
    count). One kernel whose space raises (a generic rule's ReverseComputeAt on a fused attention
    kernel whose pre-schedule failed) had ended the whole tuning run before its first trial; it keeps
    its default schedule instead."""
    kept = []
    for index, (task, context) in enumerate(zip(extracted, contexts)):
        try:
            if not context.clone().generate_design_space():
                raise ValueError("the generic space has no schedule for it")
        except Exception as exc:  # noqa: BLE001 - any failure of one kernel's space leaves the others to tune
            result.not_searchable[task.task_name] = error_line(exc, last=True, limit=160)
            continue
        kept.append(index)
    result.tasks_tuned = len(kept)
    return [extracted[i] for i in kept], [contexts[i] for i in kept], [weights[i] for i in kept]


def _say_not_searchable(result: TuneResult, progress: bool) -> None:
    if progress and result.not_searchable:
        for name, why in result.not_searchable.items():
            sys.stderr.write(f"not tuned: {name} keeps its default schedule (the search cannot take it: {why})\n")


def _start_from_default_schedules(
    mod, extracted, backend, target, session, work_dir, runner, database, result, weights, progress
):
    """Measure each kernel's default schedule into `database` and the log: the search's first best."""
    from edgecc.schedules.weight_packing import constant_parameters
    from edgecc.tuning.builder import InProcessBuilder, shared_library_compiler
    from edgecc.tuning.default_baseline import measure_default_schedules

    if progress:
        sys.stderr.write(f"measuring the default schedules of {len(extracted)} kernels: the bar tuning must beat\n")
    builder = InProcessBuilder(work_dir, *(shared_library_compiler(target) if session else (None, None)))
    baseline = measure_default_schedules(
        extracted, constant_parameters(mod), backend, target, builder, runner, database, target.name
    )
    append_records(Path(result.log_path), baseline.records)
    result.default_ms_per_task = {str(t): ms_ for t, ms_ in baseline.ms_per_task.items()}
    result.best_ms_per_task = dict(result.default_ms_per_task)
    result.defaults_not_measured = baseline.not_measured
    if result.best_ms_per_task:
        result.curve.append([result.trials_before, estimated_total(weights, result.best_ms_per_task)])


def estimated_total(weights, best_ms_per_task: dict) -> float:
    """The model's kernel milliseconds as the search knows them: each task's best x its calls."""
    return sum(float(weights[int(t)]) * ms_ for t, ms_ in best_ms_per_task.items())


def _require_measurements(result: TuneResult, session: dict | None) -> None:
    """A tuning run that measured nothing is a failure (a board that cannot time, a builder that
    cannot build), not a run that found nothing faster: say so, with the first error."""
    measured = result.trials_run - result.build_failures - result.run_failures
    if result.trials_run and measured > 0:
        return
    where = f" on the board {session.get('rpc') or session.get('tracker')}" if session else ""
    if not result.trials_run:
        if result.stopped_by == "time budget":
            raise TuningError(
                f"tuning{where} measured nothing before the time budget ran out; give it more time (--budget)"
            )
        raise TuningError(f"tuning{where} ran no trial ({result.tasks} kernel(s) to tune)")
    first = result.first_errors[0] if result.first_errors else "no error message"
    raise TuningError(
        f"tuning{where} measured nothing: all {result.trials_run} trials failed "
        f"({result.build_failures} to build, {result.run_failures} to run); first error: {first}"
    )


def _tune_tasks(
    ms, contexts, weights, work_dir, trials, max_trials_per_task, budget_s, target, session, runner, database, callback
):
    from edgecc.tuning.builder import InProcessBuilder, shared_library_compiler

    ms.tune.tune_tasks(
        tasks=contexts,
        task_weights=weights,
        work_dir=work_dir,
        max_trials_global=trials,
        max_trials_per_task=max_trials_per_task,
        num_trials_per_iter=batch_size(trials, len(contexts), budget_s),
        builder=InProcessBuilder(
            work_dir,
            *(shared_library_compiler(target) if session else (None, None)),
            before_batch=callback.before_build,
        ),
        runner=runner,
        database=database,
        cost_model="xgb",
        measure_callbacks=[*ms.MeasureCallback.create("default"), callback],
    )
