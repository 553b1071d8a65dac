"""Apply shared tuning records to a lowered module, for the exact target being compiled only.

TVM's database lookup ignores the target, so records are filtered here before TVM sees them:
a schedule measured on one board never reaches another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecc.schedules.common import SOURCE_ATTR, is_scheduled
from edgecc.tuning.records import read_logs, target_key


@dataclass
class TuningSummary:
    kernels: int = 0
    tuned: int = 0
    default: int = 0
    # kernels whose default schedule measured faster, when tuned, than every tuned record of theirs
    default_fastest: int = 0
    records_for_target: int = 0
    records_other_targets: int = 0
    bad_lines: int = 0
    skipped: list[str] = field(default_factory=list)  # "file:line: why" of each unusable line
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _database_for(records):
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.MemoryDatabase()
    for record in records:
        workload = database.commit_workload(ms.database.Workload.from_json(record.workload).mod)
        database.commit_tuning_record(ms.database.TuningRecord.from_json(record.data["trace"], workload))
    return database


def _kernels_with_records(mod, kernels, records) -> int:
    """How many of `kernels` are the workload of one of `records`, matched as TVM's lookup matches."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    if not records:
        return 0
    database = ms.database.MemoryDatabase()
    for record in records:
        database.commit_workload(ms.database.Workload.from_json(record.workload).mod)
    return sum(bool(database.has_workload(_normalize_mod(mod[gv]))) for gv in kernels)


def apply_tuning_records(mod, target, log_dirs: list[Path]):
    """Schedule the kernels of a lowered module that have records for exactly this target.

    Returns (module, TuningSummary); kernels without a record, or whose default schedule measured
    faster than their every tuned record (default_baseline.py), stay unscheduled for the backend's
    default schedule. `files` lists the log files that supplied the applied records."""
    from tvm import relax
    from tvm.tirx import PrimFunc

    from edgecc.tuning.intrinsics import only_target_intrinsics
    from edgecc.tuning.records import best_records

    readout = read_logs(log_dirs)
    tvm_target = target.tvm()
    key = target_key(tvm_target)
    matching = [r for r in readout.records if r.data["target"] == key]
    summary = TuningSummary(
        records_for_target=len(matching),
        records_other_targets=len(readout.records) - len(matching),
        bad_lines=len(readout.bad_lines),
        skipped=[f"{file}:{number}: {why}" for file, number, why in readout.bad_lines],
    )
    # Kernels a graph pass already scheduled (fused attention) are neither tuned nor default.
    kernels = [gv for gv, func in mod.functions.items() if isinstance(func, PrimFunc) and not is_scheduled(func)]
    summary.kernels = len(kernels)
    fastest = best_records(matching).values()
    best = [r for r in fastest if not r.is_default]
    summary.default_fastest = _kernels_with_records(mod, kernels, [r for r in fastest if r.is_default])
    if best:
        summary.files = sorted({r.source.rsplit(":", 1)[0] for r in best})
        database = _database_for(best)
        # Replaying a trace that tensorizes needs the target's intrinsics registered.
        with tvm_target, database, only_target_intrinsics(tvm_target):
            tuned_mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        tuned = [gv.name_hint for gv in kernels if is_scheduled(tuned_mod[gv.name_hint])]
        summary.tuned = len(tuned)
        mod = tuned_mod.clone()
        for name in tuned:
            mod[name] = mod[name].with_attr(SOURCE_ATTR, "tuned")
    summary.default = summary.kernels - summary.tuned
    return mod, summary
