"""Every dense layer in BF16 arithmetic with FP32 accumulation (AVX512-BF16 `vdpbf16ps`).

`matmul(x, W)` with W a float32 [K, N] constant becomes `matmul(bf16(x), bf16(W), out_dtype=f32)`
(embedding tables: stored bfloat16, the gathered rows widened to float32). The weight is rounded
(to nearest even) and stored as bfloat16 at compile time, packed for the instruction
(edgecc.schedules.matmul_dot); the input is rounded at run time once per distinct input (Q, K and
V share one), inside its producer's kernel where TVM's FuseOps can put it. Bias, GELU, residual
add, softmax, LayerNorm and every reduction stay FP32. A layer the instruction cannot take (K odd,
N not a multiple of 16) stays FP32 and is listed with the reason; on a target that runs here, each
dense shape is timed BF16 vs FP32 and kept BF16 only where faster
(edgecc.passes.precision.low_precision_timing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes.precision.dense_weights import (
    LayerFallback,
    choose_dense_layer,
    embedding_table,
    fold_weight_transposes,
    instruction_fallback_reason,
    layer_names,
    weight_key,
)
from edgecc.passes.precision.quantize_dense_layers_int8 import (
    ATTENTION,
    fallback_summary,
    on_fallback_instruction,
)


@dataclass(frozen=True)
class Bf16DenseStats:
    instruction: str | None  # e.g. "vdpbf16ps (avx512bf16)"; None: the target has no BF16 arithmetic
    weights: str = "bfloat16 (round to nearest even), packed for the instruction at compile time"
    activations: str = "rounded to bfloat16 at run time; softmax, LayerNorm, reductions stay FP32"
    bf16_layers: tuple[str, ...] = ()
    fallbacks: tuple[LayerFallback, ...] = ()
    # BF16 layers on the instruction's fallback (AMX tdpbf16ps -> vdpbf16ps: the tiles do not fit) and why
    instruction_fallbacks: tuple[LayerFallback, ...] = ()
    fallback_instruction: str | None = None
    bf16_math_layers: int = 0
    fp32_layers: int = 0
    rounded_inputs: int = 0
    embedding_tables: int = 0  # stored as bfloat16
    attention: str = ATTENTION
    timing: str = ""
    timings: tuple[dict, ...] = ()

    def summary(self) -> str:
        if self.instruction is None:
            return "BF16: this target has no BF16 arithmetic (AVX512-BF16 vdpbf16ps); every layer compiled as FP32"
        text = f"BF16 dense layers: {self.bf16_math_layers} on {self.instruction}"
        text += on_fallback_instruction(self.instruction_fallbacks, self.fallback_instruction)
        return fallback_summary(text, self.fallbacks, self.timing)


def to_bf16(array: np.ndarray) -> np.ndarray:
    import ml_dtypes

    return array.astype(ml_dtypes.bfloat16)  # round to nearest even, as the run-time kernel does


@mutator
class _DenseBf16Rewriter(PyExprMutator):
    def __init__(self, mod, ins, lanes, keep_fp32, keys=None, tables=True):
        super().__init__(mod)
        self.keys = keys
        self.tables = tables
        self.mod_ = mod
        self.ins = ins
        self.lanes = lanes
        self.keep_fp32 = keep_fp32 or {}
        self.names = layer_names(mod)
        self.layers, self.fallbacks, self.on_fallback, self.embeddings = [], [], [], 0
        self.rounded: list = []  # (input var, bf16 var)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        table = embedding_table(call)
        # embedding tables: stored as bfloat16, the gathered rows widened back to float32
        if table is not None and self.tables and (self.keys is None or weight_key(table) in self.keys):
            self.embeddings += 1
            rows = self.builder_.emit(relax.op.take(relax.const(to_bf16(table)), call.args[1], axis=0))
            return relax.op.astype(rows, "float32")
        chosen = choose_dense_layer(call, self.names, self.keys, self.keep_fp32, self.ins, self.fallbacks)
        if chosen is None:
            return call
        weight, key, name = chosen
        self.layers.append(name)
        why = instruction_fallback_reason(call.args[0], weight, self.ins)
        if why:
            self.on_fallback.append(LayerFallback(name, key, tuple(weight.shape), why))
        x = self._rounded(call.args[0])
        return relax.op.matmul(x, relax.const(to_bf16(weight)), out_dtype="float32")

    def _rounded(self, x):
        """x as bfloat16, once per distinct input: a Relax cast, which TVM's FuseOps puts into the
        producer's epilogue where it can (FFN1's GELU writes bf16 for FFN2) and into a small
        elementwise kernel elsewhere (after LayerNorm, after attention)."""
        for var, rounded in self.rounded:
            if var.same_as(x):
                return rounded
        rounded = self.builder_.emit(relax.op.astype(x, "bfloat16"))
        self.rounded.append((x, rounded))
        return rounded

    def transform(self):
        return rewrite_relax_functions(self)


def cast_dense_layers_bf16(
    mod: tvm.IRModule,
    ins,
    lanes: int,
    keep_fp32: dict[str, str] | None = None,
    keys: set[str] | None = None,
    tables: bool = True,
):
    """(module, Bf16DenseStats): dense layers (all, or those whose weight_key is in `keys`) in BF16
    math on `ins` (edgecc.schedules.matmul_dot); embedding tables (those in `keys`) stored bf16 if `tables`."""
    rewriter = _DenseBf16Rewriter(fold_weight_transposes(mod), ins, lanes, keep_fp32, keys, tables)
    result = relax.transform.DeadCodeElimination()(rewriter.transform())
    stats = Bf16DenseStats(
        f"{ins.name} ({ins.feature})",
        bf16_layers=tuple(rewriter.layers),
        fallbacks=tuple(rewriter.fallbacks),
        instruction_fallbacks=tuple(rewriter.on_fallback),
        fallback_instruction=ins.fallback.label if ins.fallback else None,
        bf16_math_layers=len(rewriter.layers),
        fp32_layers=len(rewriter.fallbacks),
        rounded_inputs=len(rewriter.rounded),
        embedding_tables=rewriter.embeddings,
    )
    return result, stats


@tvm.transform.module_pass(opt_level=0, name="cast_dense_layers_bf16")
class CastDenseLayersBf16:
    """--precision bf16. Without BF16 arithmetic on the target (`instruction` None) it changes
    nothing and its statistics say so (one line in the log, and report.json)."""

    def __init__(self, instruction, lanes: int, target, timed: bool, attention: str = ATTENTION):
        self.attention = attention  # how the fused attention computes (BF16 on AMX tiles, or FP32)
        self.instruction = instruction
        self.lanes = lanes
        self.target = target
        self.timed = timed
        self.stats: Bf16DenseStats | None = None

    @property
    def description(self) -> str:
        return (
            f"bf16 math on {self.instruction.name}"
            if self.instruction
            else "no bf16 arithmetic on target: compiled as fp32"
        )

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from edgecc.passes.precision.low_precision_timing import slower_layers

        if self.instruction is None:
            from edgecc.passes.precision.dense_weights import list_dense_layers

            # counted for the report (every one FP32); the module itself is returned untouched
            dense = sum(1 for layer in list_dense_layers(fold_weight_transposes(mod)) if layer["kind"] == "dense")
            self.stats = Bf16DenseStats(None, weights="float32", activations="float32", fp32_layers=dense)
            return mod
        mod = fold_weight_transposes(mod)
        keep_fp32, timings, note = slower_layers(
            mod,
            self.target,
            self.instruction,
            "bf16",
            self.timed,
            lambda m: cast_dense_layers_bf16(m, self.instruction, self.lanes)[0],
        )
        mod, stats = cast_dense_layers_bf16(mod, self.instruction, self.lanes, keep_fp32)
        self.stats = replace(stats, timing=note, timings=tuple(t.to_dict() for t in timings), attention=self.attention)
        return mod
