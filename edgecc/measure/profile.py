"""Per-kernel profile of a compiled Relax model, with operations, bytes and a roofline placement.

TVM 0.27 removed the VM's per-op profiler. On this machine the kernels are timed inside the model:
the VM's instrument hook brackets every call of a real inference, so each kernel sees the caches
and data a real run leaves it, and whatever is not inside a kernel is the runtime's own work
(allocation, views, dispatch), measured rather than inferred. On a board over RPC, where the hook
cannot run, each kernel is timed alone on random inputs of its buffer shapes (kernel_timer.py), from
a library of the kernels alone built for the board (kernels_library): in the model's library they are
an import of the VM executable, and over RPC time_evaluator looks a name up in the module it is given
or the board's global registry, never in that module's imports ("Cannot find ... in the global registry").
Operations and bytes come from each kernel's TIR (counting.py); the roof from the target's facts.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgecc.errors import EdgeccError, error_line
from edgecc.measure.counting import COUNTING_METHOD, count_flops, count_ops, dominant_precision
from edgecc.measure.kernel_timer import COLD_ARGUMENT_BYTES, SAMPLES_PER_ROUND, KernelTimer, kernel_args
from edgecc.measure.roofline import Machine, roofline
from edgecc.measure.traffic import kernel_traffic

__all__ = [
    "KernelTimer",
    "call_counts",
    "count_flops",
    "kernel_args",
    "profile_artifact",
    "profile_in_model",
    "profile_kernels",
    "roofline",
]

_MIN_ROUNDS, _MAX_ROUNDS = 7, 40


def call_counts(mod) -> dict[str, int]:
    """How many times each PrimFunc is called from the Relax functions of `mod` (call_tir and direct calls)."""
    import tvm
    from tvm import relax

    counts: dict[str, int] = {}
    call_tir_ops = {tvm.ir.Op.get(n) for n in ("relax.call_tir", "relax.call_tir_inplace")}

    def visit(expr):
        if not isinstance(expr, relax.Call):
            return
        callee = expr.args[0] if expr.op in call_tir_ops else expr.op
        if isinstance(callee, tvm.ir.GlobalVar) and isinstance(mod[callee], tvm.tirx.PrimFunc):
            counts[callee.name_hint] = counts.get(callee.name_hint, 0) + 1

    for _, func in mod.functions.items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return counts


def _as_machine(peak_gflops, bandwidth_gbs, machine: Machine | None) -> Machine:
    if machine is not None:
        return machine
    peaks = dict(peak_gflops) if isinstance(peak_gflops, dict) else ({"fp32": peak_gflops} if peak_gflops else {})
    return Machine(peaks, bandwidth_gbs)


def kernel_entry(mod, name: str, calls: int, seconds_per_call: float, machine: Machine) -> dict:
    """One kernel's row: time, operations, bytes, roofline place and where its schedule came from."""
    from edgecc.schedules.common import schedule_source

    func = mod[name]
    ops = count_ops(func)
    traffic = kernel_traffic(func)
    precision = dominant_precision(ops)
    flops = sum(ops.values())
    entry = {
        "name": name,
        "calls": calls,
        "ms_per_call": seconds_per_call * 1e3,
        "total_ms": seconds_per_call * 1e3 * calls,
        "flops": flops,
        "ops_by_precision": ops,
        "precision": precision,
        "bytes": traffic.bytes,
        "bytes_read": traffic.bytes_read,
        "bytes_written": traffic.bytes_written,
        "argument_bytes": traffic.argument_bytes,
        "gathered": [b.name for b in traffic.buffers if b.gathered],
        "schedule": schedule_source(func) or "unscheduled",
    }
    entry.update(
        roofline(flops, traffic.bytes, seconds_per_call, machine.peak(precision), machine.bandwidth_gbs, machine)
    )
    return entry


def _summary(kernels: list[dict], skipped: list, machine: Machine, rounds: int, method: str) -> dict:
    kernels.sort(key=lambda k: k["total_ms"], reverse=True)
    total = sum(k["total_ms"] for k in kernels)
    for k in kernels:
        k["share"] = k["total_ms"] / total if total else 0.0
    return {
        "kernels": kernels,
        "skipped": skipped,
        "sum_ms": total,
        "kernel_count": len(kernels),
        "rounds": rounds,
        "peak_gflops": machine.peak("fp32"),
        "peaks_gflops": dict(machine.peaks),
        "memory_bandwidth_gbs": machine.bandwidth_gbs,
        "cache_bytes": machine.cache_bytes,
        "above_roof": sum(1 for k in kernels if k.get("above_roof")),
        "families": kernel_families(kernels, machine),
        "method": method,
        "counting": COUNTING_METHOD,
    }


def kernel_families(kernels: list[dict], machine: Machine) -> list[dict]:
    """The kernels grouped by where their schedule came from (a rule: one kernel family), slowest
    first: time, arithmetic rate, and that rate against the peak of the family's main precision."""
    groups: dict[str, list[dict]] = {}
    for k in kernels:
        groups.setdefault(k.get("schedule", "unscheduled"), []).append(k)
    families = []
    for source, members in groups.items():
        ms = sum(k["total_ms"] for k in members)
        by_precision: dict[str, float] = {}
        for k in members:
            by_precision[k["precision"]] = by_precision.get(k["precision"], 0.0) + k["flops"] * k["calls"]
        flops = sum(by_precision.values())
        precision = max(by_precision, key=by_precision.get)
        gflops = flops / (ms * 1e6) if ms else 0.0
        peak = machine.peak(precision)
        families.append(
            {
                "schedule": source,
                "kernels": len(members),
                "calls": sum(k["calls"] for k in members),
                "total_ms": ms,
                "precision": precision,
                "achieved_gflops": gflops,
                "pct_of_peak_compute": 100 * gflops / peak if peak else None,
            }
        )
    return sorted(families, key=lambda f: f["total_ms"], reverse=True)


class _CallRecorder:
    """The VM instrument: seconds spent inside each call of one run, by the called function's name."""

    def __init__(self):
        self.calls: list[tuple[str, float]] = []
        self._started = 0.0

    def __call__(self, func, name, before_run, ret_value, *args) -> int:
        if before_run:
            self._started = time.perf_counter()
        else:
            self.calls.append((str(name), time.perf_counter() - self._started))
        return 0  # VMInstrumentReturnKind.kNoOp: run the call as usual


def _instrumented_run(vm, arguments) -> list[tuple[str, float]]:
    recorder = _CallRecorder()
    vm.set_instrument(recorder)
    try:
        vm["main"](*arguments)
    finally:
        vm.set_instrument(None)
    return recorder.calls


def _plain_run(vm, arguments) -> float:
    started = time.perf_counter()
    vm["main"](*arguments)
    return time.perf_counter() - started


def profile_in_model(
    mod, vm, arguments, peak_gflops=None, bandwidth_gbs=None, seconds: float = 1.0, machine: Machine | None = None
) -> dict:
    """Every kernel timed inside real inferences: blocks of plain and instrumented runs alternate
    (P I P I ... P), each instrumented block compared with the mean of the plain blocks on either
    side of it, so a burst of load from other work hits both sides of a comparison; each block is
    the median of a few runs (more for a small model, whose single runs a time slice can double).

    A call's bracket also holds the hook's own return and re-entry; that cost, measured as the
    median bracket of `vm.builtin.null_value` (a call that does nothing), is taken off every call."""
    machine = _as_machine(peak_gflops, bandwidth_gbs, machine)
    kernels_here = set(call_counts(mod))
    # The calls a real run makes: with size buckets, only the bucket these inputs fall in runs
    counts = dict(Counter(name for name, _ in _instrumented_run(vm, arguments) if name in kernels_here))
    if not counts:
        return None  # these inputs run none of `mod`'s kernels: the caller times them alone instead
    _plain_run(vm, arguments)  # warm
    estimate = min(_plain_run(vm, arguments) for _ in range(3))
    per_block = int(min(20, max(2, np.ceil(0.01 / max(estimate, 1e-6)))))
    rounds = int(min(_MAX_ROUNDS, max(_MIN_ROUNDS, seconds / max(2 * per_block * estimate, 1e-6))))

    def plain_block() -> float:
        return float(np.median([_plain_run(vm, arguments) for _ in range(per_block)]))

    plain = [plain_block()]
    blocks = []
    for _ in range(rounds):
        blocks.append([_instrumented_run(vm, arguments) for _ in range(per_block)])
        plain.append(plain_block())
    empty = [s for block in blocks for calls in block for name, s in calls if name == "vm.builtin.null_value"]
    hook = float(np.median(empty)) if empty else 0.0
    per_kernel = {name: [] for name in counts}
    runtime_sums, ratios = [], []
    for index, block in enumerate(blocks):
        block_kernels = {name: [] for name in counts}
        for calls in block:
            totals = dict.fromkeys(counts, 0.0)
            runtime = 0.0
            for name, spent in calls:
                if name in totals:
                    totals[name] += spent - hook
                else:
                    runtime += spent - hook
            for name, spent in totals.items():
                per_kernel[name].append(max(spent, 0.0))
                block_kernels[name].append(max(spent, 0.0))
            runtime_sums.append(runtime)
        # per kernel the block's median: a time slice lost to other work lands on one kernel of one run
        block_sum = sum(float(np.median(samples)) for samples in block_kernels.values())
        ratios.append(block_sum / ((plain[index] + plain[index + 1]) / 2))
    kernels = [
        kernel_entry(mod, name, counts[name], float(np.median(samples)) / counts[name], machine)
        for name, samples in per_kernel.items()
    ]
    summary = _summary(
        kernels,
        [],
        machine,
        rounds,
        "each kernel timed inside real inferences (the VM's instrument hook brackets every call), "
        f"blocks of {per_block} instrumented runs alternating with blocks of plain runs of the whole model; "
        f"per-kernel medians over all runs, the hook's own {hook * 1e6:.2f} us per call taken off",
    )
    summary["hook_us_per_call"] = hook * 1e6
    summary["runtime_calls"] = {
        "calls_per_run": sum(1 for name, _ in blocks[0][0] if name not in counts),
        "ms": float(np.median(runtime_sums)) * 1e3,
    }
    summary["runs_per_block"] = per_block
    summary = with_end_to_end(summary, float(np.median(plain)) * 1e3)
    # the spread of the rounds' own ratios: how far one round's comparison can be trusted
    summary["sum_over_end_to_end_spread"] = [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))]
    return summary


def profile_kernels(
    mod,
    lib,
    device,
    peak_gflops=None,
    bandwidth_gbs=None,
    end_to_end=None,
    seconds: float = 1.0,
    progress=None,
    machine: Machine | None = None,
) -> dict:
    """Every kernel `main` calls timed alone (on a board over RPC); top kernels (by total time) first.

    `lib`: the built or loaded runtime module (host or RPC); `end_to_end`: when given, a callable
    that returns the median seconds of `runs` runs of the whole model, timed in the same rounds
    (on a shared machine whose speed drifts, timings a few seconds apart differed by up to 2x)."""
    from tvm import tirx

    machine = _as_machine(peak_gflops, bandwidth_gbs, machine)
    counts = call_counts(mod)
    rng = np.random.default_rng(0)
    timers, skipped = {}, []
    names = sorted(counts)
    for index, name in enumerate(names):
        func = mod[name]
        args = kernel_args(func)
        if args is None or not isinstance(func, tirx.PrimFunc):
            skipped.append({"name": name, "reason": "symbolic shape"})
            continue
        if progress:
            progress(f"profiling kernel {index + 1}/{len(names)}: {name}")
        try:
            timers[name] = KernelTimer(lib, name, args, device, rng)
        except Exception as exc:  # noqa: BLE001 - a kernel the runtime cannot call alone; say so, keep the rest
            skipped.append(
                {
                    "name": name,
                    "reason": error_line(exc, last=True, limit=200),
                }
            )
    if not timers and skipped:
        # Nothing timed: the whole model's time is not the runtime's own work, it is unknown where it goes.
        summary = _summary([], skipped, machine, 0, "no kernel could be timed alone")
        summary["not_profiled"] = f"none of the {len(skipped)} kernels could be timed alone: {skipped[0]['reason']}"
        return summary
    samples, model_seconds, rounds = _timed_rounds(timers, end_to_end, seconds)
    kernels = [
        kernel_entry(mod, name, counts[name], float(np.median(times)), machine) for name, times in samples.items()
    ]
    summary = _summary(
        kernels,
        skipped,
        machine,
        rounds,
        "each kernel timed alone with time_evaluator on random inputs of its buffer shapes (caches "
        f"flushed of all but its first argument when those exceed {COLD_ARGUMENT_BYTES >> 20} MiB, "
        "on the local CPU), times its call count in main; rounds alternate one timing of the "
        "whole model with every kernel, medians over rounds",
    )
    return with_end_to_end(summary, float(np.median(model_seconds)) * 1e3) if model_seconds else summary


def _timed_rounds(timers: dict, end_to_end, seconds: float) -> tuple[dict[str, list[float]], list[float], int]:
    """Per-kernel and whole-model samples, alternated so both see the same machine state; and the rounds."""
    samples = {name: [] for name in timers}
    model_seconds = []
    round_seconds = sum(t.round_seconds for t in timers.values())
    if end_to_end is not None:
        end_to_end(1)  # warm
        round_seconds += end_to_end(1) * SAMPLES_PER_ROUND
    rounds = int(min(_MAX_ROUNDS, max(3, seconds / max(round_seconds, 1e-6))))
    for _ in range(rounds):
        if end_to_end is not None:
            model_seconds.append(end_to_end(SAMPLES_PER_ROUND))
        for name, timer in timers.items():
            samples[name].append(timer())
    return samples, model_seconds, rounds


def with_end_to_end(summary: dict, end_to_end_ms: float) -> dict:
    """The profile summary compared with the end-to-end latency timed in the same rounds: what the
    kernels do not account for is the runtime's own work between them (and timing noise)."""
    summary["end_to_end_ms"] = end_to_end_ms
    summary["sum_over_end_to_end"] = summary["sum_ms"] / end_to_end_ms if end_to_end_ms else 0.0
    summary["unaccounted_ms"] = end_to_end_ms - summary["sum_ms"]
    return summary


def kernels_library(module, target, folder: Path) -> Path:
    """`module`'s kernels built alone into one shared library (cross-linked for a board), each a
    function of the library itself, so a board's time_evaluator finds it by name."""
    import tvm
    from tvm.support import cc

    kernels = {
        gv.name_hint: func.with_attr("global_symbol", gv.name_hint)
        for gv, func in module.functions.items()
        if isinstance(func, tvm.tirx.PrimFunc)
    }
    library = tvm.compile(tvm.IRModule(kernels), target=target.tvm())
    cross = target.toolchain is not None and "mtriple" in target.tvm_target
    path = Path(folder) / "kernels.so"
    library.export_library(str(path), fcompile=cc.cross_compiler(target.toolchain.require()) if cross else None)
    return path


def not_profiled(reason: str) -> dict:
    """A profile that timed nothing, and why: the reports then say so rather than read the model's whole
    time as the runtime's own work."""
    return {"kernels": [], "sum_ms": 0.0, "kernel_count": 0, "skipped": [], "not_profiled": reason}


def profile_artifact(module, artifact, library: Path, inputs: dict, machine: Machine, progress=None, target=None):
    """The per-kernel profile of a loaded artifact: inside the model when it runs here, each kernel
    alone on a board (from kernels_library, built for `target`) or here, when the sample inputs run
    none of `module`'s kernels, e.g. another size bucket's. None when there is no scheduled module to
    read kernels from."""
    if module is None:
        return None

    if artifact.session is None:
        if progress:
            progress("profiling kernels inside the model ...")
        profile = profile_in_model(module, artifact.vm, artifact.arguments(inputs), machine=machine)
        if profile is not None:
            return profile
    if artifact.emulated:  # QEMU's speed says nothing about the board's: time the kernels, place none on its roof
        machine = Machine()
    where = f"over RPC on {artifact.where}" if artifact.session is not None else "here"
    try:
        if artifact.session is not None:
            if target is None:
                return not_profiled(f"{where}: no target to build the kernels alone for")
            with tempfile.TemporaryDirectory(prefix="edgecc-kernels-") as folder:
                kernels = kernels_library(module, target, Path(folder))
                artifact.session.upload(str(kernels))
            lib = artifact.session.load_module(kernels.name)
        else:
            import tvm

            lib = tvm.runtime.load_module(str(library))
    except EdgeccError:
        raise  # a board that stopped answering: the measure step says so
    except Exception as exc:  # noqa: BLE001 - tvm's build and load errors vary; the profile is extra, the compile stands
        return not_profiled(f"{where}: the kernels could not be built and loaded alone: {error_line(exc, last=True)}")
    if progress:
        progress(f"profiling kernels one by one {'on the board' if artifact.session is not None else 'here'} ...")
    profile = profile_kernels(
        module,
        lib,
        artifact.device,
        progress=progress,
        machine=machine,
        end_to_end=lambda runs: float(np.median(artifact.time(inputs, repeat=runs))),
    )
    if profile.get("not_profiled"):
        profile["not_profiled"] = f"{where}: {profile['not_profiled']}"
    profile["emulated"] = bool(artifact.emulated)
    return profile
