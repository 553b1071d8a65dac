"""Every dense layer in INT8 arithmetic on the target's dot-product instruction.

`matmul(x, W)` with W a float32 [K, N] constant becomes

    q, s, zp = quantize_rows(x)                       # run time, per row (edgecc.schedules.quantize_rows)
    acc      = matmul(q, Wq, out_dtype=int32)         # vpdpbusd / vpmaddubsw / sdot (edgecc.schedules.matmul_dot),
                                                      # smmla (edgecc.schedules.matmul_mmla)
    y        = float32(acc - zp * colsum(Wq)) * s * w # dequantize, fused into the GEMM's epilogue

with Wq = int8(round(W / w)), w per output column (symmetric, max |W[:, j]| / 127) and colsum(Wq) a
compile-time constant. The bias, GELU and residual add that follow stay Relax ops, so TVM's FuseOps
puts them into the same kernel after the dequantization. An input read by several layers (Q, K and
V) is quantized once. With calibrated static scales (`--calibration`, per-tensor) the row kernel
is replaced by a fixed scale and zero point. On vpmaddubsw, whose pairs of products are summed in a
saturating int16, dynamic activations use codes 0..127 against full int8 weights and static ones
0..255 against weights within +-64 (DotInstruction.weight_limit): no pair can saturate, and static
activations keep their 255 steps. Embedding tables are stored as per-row INT8.

A layer the instruction cannot take (K not a multiple of 4, N not a multiple of the vector's
lanes, a non-float32 input) stays FP32 and is listed in the statistics with the reason; on a matrix
instruction (smmla) a layer its 2 x 2 x 8 tile does not fit runs on the one-row fallback (sdot) and
is listed in `instruction_fallbacks` with the reason. So is a
layer whose INT8 kernel timed slower than FP32 on this machine (edgecc.passes.precision.
low_precision_timing). Attention's QK^T and PV are not dense layers: they stay in the fused
attention kernel, FP32, or BF16 on a CPU with AMX (edgecc.schedules.attention_amx).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes.precision.dense_weights import (
    LayerFallback,
    choose_dense_layer,
    fold_weight_transposes,
    instruction_fallback_reason,
    layer_names,
)
from edgecc.passes.precision.low_precision_timing import load_caveat_of
from edgecc.passes.precision.quantize_dense_weights_int8 import quantize_per_channel

ATTENTION = "FP32 (QK^T and PV in the fused FP32 attention kernel, which has no low-precision variant)"


@dataclass(frozen=True)
class Int8DenseStats:
    """What the pass did, for report.json["passes"] / ["accuracy"]["int8"] and the compile log."""

    instruction: str | None  # e.g. "vpdpbusd (avx512vnni)"
    activations: str  # how dense inputs are quantized
    weights: str = "per-channel symmetric int8, packed for the instruction at compile time"
    int8_layers: tuple[str, ...] = ()
    fallbacks: tuple[LayerFallback, ...] = ()
    # INT8 layers on the instruction's one-row fallback (smmla -> sdot: the tile does not fit) and why
    instruction_fallbacks: tuple[LayerFallback, ...] = ()
    fallback_instruction: str | None = None  # e.g. "sdot (dotprod)"
    int8_math_layers: int = 0
    fp32_layers: int = 0
    quantized_inputs: int = 0  # row-quantize kernels (one per distinct dense input)
    embedding_tables: int = 0  # stored as per-row INT8
    attention: str = ATTENTION
    timing: str = ""  # how the never-slower-than-FP32 check was made (or why not)
    timings: tuple[dict, ...] = ()  # per dense shape: fp32_us, int8_us, kept

    def summary(self) -> str:
        text = f"INT8 dense layers: {self.int8_math_layers} on {self.instruction}"
        text += on_fallback_instruction(self.instruction_fallbacks, self.fallback_instruction)
        return fallback_summary(text, self.fallbacks, self.timing)


def on_fallback_instruction(fallbacks, instruction: str | None) -> str:
    """ ", n of them on <instruction> (layers and why)" for layers on a matrix instruction's fallback; "" for none."""
    return f", {len(fallbacks)} of them on {instruction} ({_listed(fallbacks, '')})" if fallbacks else ""


def _listed(fallbacks, where_the_rest_are: str) -> str:
    """The first four layers and why, then how many more."""
    listed = "; ".join(f"{f.layer}: {f.reason}" for f in fallbacks[:4])
    return listed + (f"; and {len(fallbacks) - 4} more{where_the_rest_are}" if len(fallbacks) > 4 else "")


def fallback_summary(text: str, fallbacks, timing: str = "") -> str:
    """`text`, then the layers kept FP32 and why (the first four; the report has them all), and
    how the timing that kept some of them was made when it carries a caveat (a loaded machine)."""
    if not fallbacks:
        return text
    caveat = load_caveat_of(timing)
    return f"{text}; {len(fallbacks)} kept FP32 ({_listed(fallbacks, ' (report.json)')})" + (
        f" {caveat}" if caveat else ""
    )


def dynamic_activation_text(ins) -> str:
    low, high = ins.activation_range
    return f"dynamic per-row asymmetric {ins.activation_dtype} {low}..{high} (no calibration)"


@dataclass
class _Tally:
    layers: list = field(default_factory=list)
    fallbacks: list = field(default_factory=list)
    on_fallback: list = field(default_factory=list)  # LayerFallback: INT8 on the instruction's fallback
    inputs: int = 0


@mutator
class _DenseInt8Rewriter(PyExprMutator):
    def __init__(self, mod, ins, lanes, keys, static_scales, keep_fp32):
        super().__init__(mod)
        self.mod_ = mod
        self.ins = ins
        self.lanes = lanes
        self.keys = keys
        self.static_scales = static_scales or {}
        self.keep_fp32 = keep_fp32 or {}
        self.names = layer_names(mod)
        self.tally = _Tally()
        self.quantized: list = []  # (input var, (q, scale, zero point))
        self.kernels: dict = {}  # input shape -> row kernel GlobalVar

    def visit_call_(self, call):
        call = super().visit_call_(call)
        chosen = choose_dense_layer(call, self.names, self.keys, self.keep_fp32, self.ins, self.tally.fallbacks)
        if chosen is None:
            return call
        weight, key, name = chosen
        self.tally.layers.append(name)
        why = instruction_fallback_reason(call.args[0], weight, self.ins)
        if why:
            self.tally.on_fallback.append(LayerFallback(name, key, tuple(weight.shape), why))
        return self._rewrite(call.args[0], weight, key)

    def _rewrite(self, x, weight, key):
        codes = self.ins.static_activation_range if key in self.static_scales else self.ins.activation_range
        values, column_scale = quantize_per_channel(weight, axis=1, limit=self.ins.weight_limit(codes))
        column_sum = values.astype(np.int32).sum(axis=0).astype(np.int32)
        q, row_scale, zero_point = self._quantized_input(x, key)
        acc = self.builder_.emit(relax.op.matmul(q, relax.const(values), out_dtype="int32"))
        corrected = relax.op.subtract(acc, relax.op.multiply(zero_point, relax.const(column_sum)))
        widened = relax.op.astype(corrected, "float32")
        return relax.op.multiply(relax.op.multiply(widened, row_scale), relax.const(column_scale))

    def _quantized_input(self, x, key):
        if key in self.static_scales:
            return self._static(x, self.static_scales[key])
        for var, found in self.quantized:
            if var.same_as(x):
                return found
        shape = tuple(int(d) for d in x.ty.shape)
        if shape not in self.kernels:
            from edgecc.schedules.quantize_rows import quantize_rows_kernel

            low, high = self.ins.activation_range
            kernel = quantize_rows_kernel(shape, low, high, self.ins.activation_dtype, self.lanes)
            self.kernels[shape] = self.builder_.add_func(kernel, "quantize_rows")
        rows = (*shape[:-1], 1)
        out = [
            relax.TensorType(shape, self.ins.activation_dtype),
            relax.TensorType(rows, "float32"),
            relax.TensorType(rows, "int32"),
        ]
        result = self.builder_.emit(relax.call_tir(self.kernels[shape], [x], out))
        found = tuple(self.builder_.emit(relax.TupleGetItem(result, i)) for i in range(3))
        self.quantized.append((x, found))
        self.tally.inputs += 1
        return found

    def _static(self, x, scale: float):
        """Calibrated per-tensor scale (max |x| / 127): codes +-127 around a zero point at the middle of
        the range, which must hold them all (a 0..127 range would clip half of them)."""
        low, high = self.ins.static_activation_range
        zero = (low + high + 1) // 2
        codes = relax.op.add(
            relax.op.round(relax.op.multiply(x, relax.const(np.float32(1.0 / scale)))), relax.const(np.float32(zero))
        )
        q = self.builder_.emit(relax.op.astype(relax.op.clip(codes, low, high), self.ins.activation_dtype))
        rows = (*[int(d) for d in list(x.ty.shape)[:-1]], 1)
        return (q, relax.const(np.full(rows, scale, np.float32)), relax.const(np.full(rows, zero, np.int32)))

    def transform(self):
        return rewrite_relax_functions(self)


def quantize_dense_layers_int8(
    mod: tvm.IRModule,
    ins,
    lanes: int,
    keys: set[str] | None = None,
    static_scales: dict[str, float] | None = None,
    keep_fp32: dict[str, str] | None = None,
):
    """(module, Int8DenseStats): dense layers (all, or those whose weight_key is in `keys`) in INT8
    math on instruction `ins` (edgecc.schedules.matmul_dot.DotInstruction); `lanes`: float32 lanes.
    `keep_fp32`: {weight key: reason} of layers to leave FP32 (listed as fallbacks)."""
    rewriter = _DenseInt8Rewriter(fold_weight_transposes(mod), ins, lanes, keys, static_scales, keep_fp32)
    result = relax.transform.DeadCodeElimination()(rewriter.transform())
    tally = rewriter.tally
    stats = Int8DenseStats(
        ins.label,
        "static per-tensor (calibrated)" if static_scales else dynamic_activation_text(ins),
        int8_layers=tuple(tally.layers),
        fallbacks=tuple(tally.fallbacks),
        instruction_fallbacks=tuple(tally.on_fallback),
        fallback_instruction=ins.fallback.label if ins.fallback else None,
        int8_math_layers=len(tally.layers),
        fp32_layers=len(tally.fallbacks),
        quantized_inputs=tally.inputs,
    )
    return result, stats


@tvm.transform.module_pass(opt_level=0, name="quantize_dense_layers_int8")
class QuantizeDenseLayersInt8:
    """--precision int8 on a target with a dot-product instruction: dense layers in INT8 math,
    each kept only where it timed faster than FP32 here (`timed`: the target runs on this machine),
    embedding tables stored as per-row INT8."""

    def __init__(
        self, instruction, lanes: int, target, timed: bool, calibration: Path | None = None, attention: str = ATTENTION
    ):
        self.attention = attention  # how the fused attention computes (BF16 on AMX tiles, or FP32)
        self.instruction = instruction
        self.lanes = lanes
        self.target = target
        self.timed = timed
        self.calibration = calibration
        self.stats: Int8DenseStats | None = None

    @property
    def description(self) -> str:
        return f"int8 math on {self.instruction.name}"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from dataclasses import replace

        from edgecc.passes.precision.dense_weights import list_dense_layers
        from edgecc.passes.precision.low_precision_timing import slower_layers
        from edgecc.passes.precision.quantize_dense_weights_int8 import quantize_dense_weights_int8

        mod = fold_weight_transposes(mod)
        static = None
        if self.calibration:
            from edgecc.passes.precision.calibration import activation_scales, calibration_samples

            static = activation_scales(mod, calibration_samples(mod, self.calibration))
        keep_fp32, timings, note = slower_layers(
            mod,
            self.target,
            self.instruction,
            "int8",
            self.timed,
            lambda m: quantize_dense_layers_int8(m, self.instruction, self.lanes)[0],
        )
        mod, stats = quantize_dense_layers_int8(
            mod, self.instruction, self.lanes, static_scales=static, keep_fp32=keep_fp32
        )
        tables = {layer["key"] for layer in list_dense_layers(mod) if layer["kind"] == "embedding"}
        self.stats = replace(
            stats,
            timing=note,
            timings=tuple(t.to_dict() for t in timings),
            embedding_tables=len(tables),
            attention=self.attention,
        )
        return quantize_dense_weights_int8(mod, keys=tables) if tables else mod
