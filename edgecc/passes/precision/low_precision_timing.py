"""Never slower than FP32: time each INT8 / BF16 dense layer shape against its FP32 version, here.

For every distinct dense shape (input shape, N) the layer `x @ W + b` is compiled twice through
edgecc's own lowering and default schedules, once FP32 and once as the precision pass writes it
(INT8: row quantize kernel + dot-product GEMM + dequantize epilogue; BF16: rounding + dot-product
GEMM), and both are timed in alternating rounds on this machine with the layer's real weights.
The low precision is kept only where it is faster. The input's quantize/rounding is charged in
full to every layer, although layers reading the same input (Q, K, V) share one: the comparison
errs towards FP32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Alternating rounds (FP32, INT8, BF16, FP32, ...), each the mean of `number` runs; a shape's time is
# the fastest round. Other work on the machine only ever adds time, so the minimum is the estimate
# least moved by it (on a 2-core VM shared with other compiles, medians flipped FFN decisions).
ROUNDS = 7


@dataclass
class ShapeTiming:
    input_shape: list
    n: int
    layers: list[str] = field(default_factory=list)
    us: dict = field(default_factory=dict)  # precision -> microseconds, fastest round ("fp32" always there)

    @property
    def kept(self) -> str:
        """The fastest precision of this shape."""
        return min(self.us, key=lambda p: (self.us[p], p != "fp32"))

    def to_dict(self) -> dict:
        return {
            "input_shape": self.input_shape,
            "n": self.n,
            "layers": self.layers,
            **{f"{p}_us": round(v, 2) for p, v in self.us.items()},
            "kept": self.kept,
        }


def _layer_module(shape, weight: np.ndarray, rewrite):
    import tvm
    from tvm import relax

    bias = np.zeros(weight.shape[1], np.float32)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, relax.const(weight)))
            out = bb.emit_output(relax.op.add(y, relax.const(bias)))
        bb.emit_func_output(out)
    mod = bb.get()
    return tvm.IRModule((rewrite(mod) if rewrite else mod).functions)


def build_here(mod, target):
    """A relax VirtualMachine on this machine for `mod`, through edgecc's own lowering and default schedules."""
    import tvm

    from edgecc.backends import backend_for, lowering_pipeline

    backend = backend_for(target)
    with target.tvm(), tvm.transform.PassContext(opt_level=3):
        lowered = lowering_pipeline()(mod)
    built = backend.build(backend.default_schedule(lowered, target), target)
    return tvm.relax.VirtualMachine(built.executable, tvm.cpu())


def time_layer_shapes(shapes: dict, target, rewrites: dict) -> list[ShapeTiming]:
    """`shapes`: {(input shape, N): (weight, [layer names])} -> one ShapeTiming each; `rewrites`:
    {precision: module -> module in that precision} (FP32, the module as it is, is always timed)."""
    import tvm

    timings = []
    rng = np.random.default_rng(0)
    variants = {"fp32": None, **rewrites}
    for (shape, n), (weight, names) in shapes.items():
        machines = {p: build_here(_layer_module(shape, weight, r), target) for p, r in variants.items()}
        x = tvm.runtime.tensor(rng.standard_normal(shape).astype(np.float32))
        timers = {
            p: vm.time_evaluator("main", tvm.cpu(), number=10, repeat=1, min_repeat_ms=20) for p, vm in machines.items()
        }
        runs = {p: (lambda timer=timer, x=x: timer(x).mean * 1e6) for p, timer in timers.items()}
        timings.append(ShapeTiming(list(shape), n, list(names), fastest_of_rounds(runs)))
    return timings


def fastest_of_rounds(runs: dict) -> dict:
    """{name: microseconds of its fastest round}: `runs` ({name: () -> microseconds}) each warmed up
    once (first-call allocation and page faults), then called in ROUNDS alternating rounds."""
    for run in runs.values():
        run()
    rounds = {name: [] for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            rounds[name].append(run())
    return {name: float(np.min(times)) for name, times in rounds.items()}


def dense_shapes(mod, ins) -> dict:
    """{(input shape, N): (first layer's weight, [layer names])} of the dense layers `ins` can take."""
    from edgecc.passes.precision.dense_weights import dense_layer_inputs, layer_names, unsupported_reason

    names = layer_names(mod)
    shapes: dict = {}
    for key, x, weight in dense_layer_inputs(mod):
        if unsupported_reason(x, weight, ins) is None:
            signature = (tuple(int(d) for d in x.ty.shape), int(weight.shape[1]))
            shapes.setdefault(signature, (weight, []))[1].append(names.get(key, key))
    return shapes


def runs_here(options, target) -> bool:
    """Whether kernels built for `target` can be timed on this machine (not a board, not over RPC)."""
    return target.capabilities.runs_on_host and not options.rpc and not options.tracker


def slower_layers(mod, target, ins, precision: str, timed: bool, rewrite):
    """({weight key: reason} of dense layers whose `precision` kernel timed slower than FP32 here,
    [ShapeTiming], how it was decided). Layers the instruction cannot take are not timed; on a
    target that does not run here (`timed` False: a board, or a remote one) nothing is timed and
    every layer is kept."""
    from edgecc.passes.precision.dense_weights import layer_names

    if not timed:
        return (
            {},
            [],
            (
                f"not timed: '{target.name}' does not run on this machine; {precision.upper()} kept on "
                "every layer the instruction supports"
            ),
        )
    timings = time_layer_shapes(dense_shapes(mod, ins), target, {precision: rewrite})
    by_name = {name: key for key, name in layer_names(mod).items()}
    slower = {}
    for timing in timings:
        if timing.kept == "fp32":
            reason = (
                f"{precision.upper()} kernel timed slower than FP32 here ({timing.us[precision]:.1f} vs "
                f"{timing.us['fp32']:.1f} us)"
            )
            slower.update({by_name.get(name, name): reason for name in timing.layers})
    how = f"each dense shape timed {precision.upper()} vs FP32 on this machine, alternating rounds"
    return slower, timings, how + _load_caveat(precision)


def _load_caveat(precision: str) -> str:
    """Under contention each parallel kernel launch waits for descheduled threads, which costs the
    low-precision layer (a quantize kernel + the GEMM: two launches) twice what it costs FP32: on a
    2-core machine at load 7 every MiniLM INT8 layer timed 1.6-2x slower than FP32, against 2-3x
    faster when quiet. The decision stands, but says what it was measured under."""
    return loaded_machine_caveat(f"a layer kept FP32 here may be faster in {precision.upper()} on a quiet one")


def loaded_machine_caveat(consequence: str) -> str:
    """' (on a loaded machine: 1-min load .. on .. cores; `consequence`: compile again when it is quiet)'
    when the machine is busier than its cores, else ''."""
    import os

    try:
        load = os.getloadavg()[0]
    except OSError:
        return ""
    cores = os.cpu_count() or 1
    if load <= cores:
        return ""
    return f" {LOADED_MACHINE}: 1-min load {load:.1f} on {cores} cores; {consequence}: compile again when it is quiet)"


LOADED_MACHINE = "(on a loaded machine"  # opens the caveat _load_caveat appends to how a decision was timed


def load_caveat_of(timing: str) -> str:
    """The loaded-machine caveat in `timing` (a stats' `timing` text), or ''."""
    _, marker, rest = timing.partition(LOADED_MACHINE)
    return marker + rest
