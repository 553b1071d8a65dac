"""Per-kernel profile of a compiled Relax model, with FLOPs, bytes and a roofline placement.

TVM 0.27 removed the VM's per-op profiler, so each kernel (PrimFunc) of the built library is timed
on its own with `time_evaluator` on inputs of its buffer shapes, then multiplied by how many times
`main` calls it. FLOPs come from the TIR (arithmetic in every buffer store times its loop extents);
bytes are the kernel's argument buffers read and written once, the least traffic it can cause.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_FLOAT_MATH_CALLS = ("exp", "erf", "tanh", "sqrt", "rsqrt", "log", "sigmoid", "pow", "fabs", "exp2")


def _dtype(node) -> str:
    return str(getattr(node, "dtype", None) or getattr(node, "ty", ""))


def _count_expr_ops(expr) -> int:
    import tvm
    from tvm import tirx

    count = [0]
    arith = (tirx.Add, tirx.Sub, tirx.Mul, tirx.Div, tirx.Max, tirx.Min, tirx.FloorDiv)

    def visit(node):
        if isinstance(node, arith) and "float" in _dtype(node):
            count[0] += 1
        elif isinstance(node, tvm.ir.expr.Call) and "float" in _dtype(node) and any(
                str(getattr(node.op, "name", "")).endswith(n) for n in _FLOAT_MATH_CALLS):
            count[0] += 1

    # TVM 0.27's Python API has no TIR expression visitor, so walk the operand fields directly
    pending = [expr]
    while pending:
        node = pending.pop()
        visit(node)
        for field in ("a", "b", "value", "condition", "true_value", "false_value", "body"):
            child = getattr(node, field, None)
            if isinstance(child, tvm.ir.expr.Expr):
                pending.append(child)
        if isinstance(node, tvm.ir.expr.Call):
            pending.extend(a for a in node.args if isinstance(a, tvm.ir.expr.Expr))
    return count[0]


def _extent(value) -> int:
    try:
        return int(value)
    except TypeError:
        return 1  # a symbolic extent: count one iteration rather than guess


def count_flops(func) -> int:
    """Floating-point operations of one call of a PrimFunc (a multiply-add counts 2)."""
    from tvm import s_tir, tirx

    def walk(stmt, trips: int) -> int:
        if isinstance(stmt, tirx.For):
            return walk(stmt.body, trips * _extent(stmt.extent))
        if isinstance(stmt, tirx.BufferStore):
            return trips * _count_expr_ops(stmt.value)
        if isinstance(stmt, tirx.SeqStmt):
            return sum(walk(s, trips) for s in stmt.seq)
        if isinstance(stmt, s_tir.SBlockRealize):
            return walk(stmt.block, trips)
        if isinstance(stmt, s_tir.SBlock):
            return walk(stmt.body, trips)  # the init (zero fill) is not arithmetic
        if isinstance(stmt, tirx.IfThenElse):
            return walk(stmt.then_case, trips) + (walk(stmt.else_case, trips) if stmt.else_case else 0)
        body = getattr(stmt, "body", None)
        return walk(body, trips) if body is not None else 0

    return walk(func.body, 1)


def _buffer_shape(buffer) -> list[int] | None:
    try:
        return [int(d) for d in buffer.shape]
    except TypeError:
        return None


def kernel_args(func) -> list[tuple[list[int], str]] | None:
    """(shape, dtype) of each argument buffer, or None when a shape is symbolic."""
    args = []
    for param in func.params:
        buffer = getattr(param, "ty", None)  # TVM 0.27: a buffer parameter's type carries shape and dtype
        if buffer is None or not hasattr(buffer, "shape"):
            return None
        shape = _buffer_shape(buffer)
        if shape is None:
            return None
        args.append((shape, str(buffer.dtype)))
    return args


def count_bytes(args) -> int:
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for shape, dtype in args)


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


def _random_tensor(shape, dtype, device, rng):
    import tvm

    if "float" in dtype:
        data = rng.uniform(0.1, 1.0, size=shape).astype(dtype)
    else:
        data = np.zeros(shape, dtype=dtype)  # 0 is a valid index for every gather/take
    return tvm.runtime.tensor(data, device)


def _owner(lib, name: str):
    """The (imported) module that defines `name`: time_evaluator does not look into imports."""
    pending = [lib]
    while pending:
        module = pending.pop(0)
        try:
            if module.get_function(name, query_imports=False) is not None:
                return module
        except Exception:  # noqa: BLE001 - modules that cannot answer are just not the owner
            pass
        pending.extend(getattr(module, "imports", []))
    return lib


# Arguments beyond this many bytes (besides the incoming activation) would not stay in a core's
# cache between two inferences, so such a kernel is timed with them flushed.
COLD_ARGUMENT_BYTES = 1 << 20
# One sample of a hot kernel batches calls up to this long, keeping the timer's own overhead out.
_BATCH_SECONDS = 0.0005
_SAMPLES_PER_ROUND = 3


class KernelTimer:
    """Times one kernel of the built library on random inputs of its buffer shapes.

    On the local CPU, a kernel whose other arguments (weights, mostly) exceed COLD_ARGUMENT_BYTES
    is timed with the caches flushed of every argument but the first (the activation the previous
    kernel just wrote) before each call, as in a real inference where a layer's weights arrive
    from memory: timed hot, MiniLM-L6's kernels summed to only 72-84% of end to end here. Smaller
    kernels are timed hot, in batches."""

    def __init__(self, lib, name: str, args, device, rng):
        lib = _owner(lib, name)
        self.args = args
        self.tensors = [_random_tensor(shape, dtype, device, rng) for shape, dtype in args]
        probe = lib.time_evaluator(name, device, number=1, repeat=3)(*self.tensors)
        estimate = max(min(probe.results), 1e-7)
        # Local CPU only: the flush touches the argument pointers, which on a GPU or over RPC are not host memory.
        cold = device.dlpack_device_type() == 1 and count_bytes(args[1:]) > COLD_ARGUMENT_BYTES
        number = 1 if cold else max(1, int(_BATCH_SECONDS / estimate))
        self.round_seconds = estimate * number * _SAMPLES_PER_ROUND
        self._timer = lib.time_evaluator(name, device, number=number, repeat=_SAMPLES_PER_ROUND,
                                         f_preproc="cache_flush_cpu_non_first_arg" if cold else "")

    def __call__(self) -> float:
        """Median seconds per call over one round's samples."""
        return float(np.median(self._timer(*self.tensors).results))


def roofline(flops: float, bytes_moved: float, seconds: float, peak_gflops: float | None,
             bandwidth_gbs: float | None) -> dict:
    """Where a kernel sits against the target's compute peak and memory bandwidth."""
    achieved_gflops = flops / seconds / 1e9 if seconds > 0 else 0.0
    achieved_gbs = bytes_moved / seconds / 1e9 if seconds > 0 else 0.0
    intensity = flops / bytes_moved if bytes_moved else 0.0
    out = {"arithmetic_intensity": intensity, "achieved_gflops": achieved_gflops, "achieved_gbs": achieved_gbs}
    if peak_gflops and bandwidth_gbs:
        ridge = peak_gflops / bandwidth_gbs
        attainable = min(peak_gflops, intensity * bandwidth_gbs)
        out.update({
            "ridge_point": ridge,
            "bound": "compute" if intensity >= ridge else "memory",
            "attainable_gflops": attainable,
            "pct_of_peak_compute": 100.0 * achieved_gflops / peak_gflops,
            "pct_of_peak_bandwidth": 100.0 * achieved_gbs / bandwidth_gbs,
            "pct_of_roofline": 100.0 * achieved_gflops / attainable if attainable > 0 else 0.0,
        })
    return out


def profile_kernels(mod, lib, device, peak_gflops: float | None, bandwidth_gbs: float | None,
                    end_to_end=None, seconds: float = 1.0, progress=None) -> dict:
    """Time every kernel `main` calls; top kernels (by total time) first.

    `mod`: the scheduled IRModule that was built (PrimFuncs + Relax main); `lib`: the built or loaded
    runtime module (host or RPC); `device`: where to run; `end_to_end`: when given, a callable that
    returns the median seconds of `runs` runs of the whole model, to compare the kernels with.

    The timings are taken in rounds, each timing the whole model and then every kernel briefly, and
    each figure is the median over rounds. On a shared machine whose speed drifts from second to
    second, kernels timed one after the other for long and the model timed before and after them
    summed to 63-144% of end to end on the same build; in 10 ms rounds, 84-103% with another job
    running on one of the two cores.
    """
    from tvm import tirx

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
            skipped.append({"name": name, "reason": str(exc).strip().splitlines()[-1][:200] if str(exc).strip()
                            else type(exc).__name__})
    samples, model_seconds, rounds = _timed_rounds(timers, end_to_end, seconds)
    kernels = []
    for name, times in samples.items():
        func, seconds_per_call = mod[name], float(np.median(times))
        flops, bytes_moved = count_flops(func), count_bytes(timers[name].args)
        entry = {"name": name, "calls": counts[name], "ms_per_call": seconds_per_call * 1e3,
                 "total_ms": seconds_per_call * 1e3 * counts[name], "flops": flops, "bytes": bytes_moved}
        entry.update(roofline(flops, bytes_moved, seconds_per_call, peak_gflops, bandwidth_gbs))
        kernels.append(entry)
    kernels.sort(key=lambda k: k["total_ms"], reverse=True)
    total = sum(k["total_ms"] for k in kernels)
    for k in kernels:
        k["share"] = k["total_ms"] / total if total else 0.0
    summary = {"kernels": kernels, "skipped": skipped, "sum_ms": total, "kernel_count": len(kernels),
               "rounds": rounds,
               "peak_gflops": peak_gflops, "memory_bandwidth_gbs": bandwidth_gbs,
               "method": "each kernel timed alone with time_evaluator on random inputs of its buffer shapes, "
                         "on the local CPU with caches flushed of all but its first argument before each call "
                         "when those exceed 1 MiB, times its call count in main; rounds alternate one timing "
                         "of the whole model with every kernel, medians over rounds; bytes = argument buffers "
                         "read/written once, so a kernel whose data stays in cache can show more than 100 % "
                         "of the DRAM roof"}
    return with_end_to_end(summary, float(np.median(model_seconds)) * 1e3) if model_seconds else summary


_MIN_ROUNDS, _MAX_ROUNDS = 3, 30


def _timed_rounds(timers: dict, end_to_end, seconds: float) -> tuple[dict[str, list[float]], list[float], int]:
    """Per-kernel and whole-model samples, alternated so both see the same machine state; and the rounds."""
    samples = {name: [] for name in timers}
    model_seconds = []
    round_seconds = sum(t.round_seconds for t in timers.values())
    if end_to_end is not None:
        end_to_end(1)  # warm
        round_seconds += end_to_end(1) * _SAMPLES_PER_ROUND
    rounds = int(min(_MAX_ROUNDS, max(_MIN_ROUNDS, seconds / max(round_seconds, 1e-6))))
    for _ in range(rounds):
        if end_to_end is not None:
            model_seconds.append(end_to_end(_SAMPLES_PER_ROUND))
        for name, timer in timers.items():
            samples[name].append(timer())
    return samples, model_seconds, rounds


def with_end_to_end(summary: dict, end_to_end_ms: float) -> dict:
    """The profile summary compared with one end-to-end latency of the same model."""
    summary["end_to_end_ms"] = end_to_end_ms
    summary["sum_over_end_to_end"] = summary["sum_ms"] / end_to_end_ms
    # what the kernels alone do not explain: the runtime's work between kernels (dispatch, allocation) and noise
    summary["unaccounted_ms"] = end_to_end_ms - summary["sum_ms"]
    return summary


def profile_artifact(module, artifact, library: Path, peak_gflops, bandwidth_gbs, inputs: dict, progress=None):
    """The per-kernel profile of a loaded artifact, compared with the model timed in the same rounds
    (not with the latency measured earlier: on a shared machine whose speed drifts, timings a few
    seconds apart differed by up to 2x). None when there is no scheduled module to read kernels from."""
    if module is None:
        return None
    try:
        if artifact.session is not None:
            lib = artifact.session.load_module(Path(library).name)
        else:
            import tvm

            lib = tvm.runtime.load_module(str(library))
    except Exception as exc:  # noqa: BLE001 - tvm's load errors vary; the profile is extra, the compile stands without it
        return {"kernels": [], "sum_ms": 0.0, "kernel_count": 0, "skipped": [], "error": str(exc)[:200]}
    if progress:
        progress("profiling kernels one by one ...")
    return profile_kernels(module, lib, artifact.device, peak_gflops, bandwidth_gbs,
                           end_to_end=lambda runs: float(np.median(artifact.time(inputs, repeat=runs))),
                           progress=progress)
