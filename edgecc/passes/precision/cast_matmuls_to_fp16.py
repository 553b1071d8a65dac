"""--precision fp16: FP16 arithmetic where the target has it, FP16 weight storage everywhere.

Three cases, by what the target computes in FP16:

- CPU with FP16 arithmetic (aarch64 +fullfp16: Raspberry Pi 5, Snapdragon 8 Gen 2, Apple M2 host code):
  every dense layer `matmul(x, W)` (W a float32 [K, N] constant) becomes
  `matmul(fp16(x), fp16(W), out_dtype=f32)`, which the `matmul-fp16` schedule rule
  (edgecc.schedules.matmul_fp16) computes with `fmla v.8h` on FP16 accumulators in K blocks of at most
  32 products, summed in FP32 between blocks. The weight is stored FP16, packed for the tile; the
  input is rounded to FP16 at run time once per distinct input (a Relax cast that FuseOps puts into
  the producer's epilogue where it can). Bias, GELU, residual add, softmax, LayerNorm, every
  reduction and the fused attention kernel stay FP32. Accuracy on the real all-MiniLM-L6-v2 (PyTorch
  simulation with exact FP16 fused multiply-adds and the FP16 word table, 24 held-out sentences, seq
  128): `K_BLOCK_ACCURACY`. A layer the tile cannot take (N not a multiple of 8, or a K without a
  divisor of at least 8 for the blocks) stays FP32 and is listed with the reason.
- GPU targets with FP16 arithmetic (capabilities.fp16_math: CUDA, Metal): every matmul's operands
  rounded to FP16, accumulated in FP32 by the GPU kernels.
- Anything else (x86: AVX512-FP16 exists only on Intel Sapphire Rapids and later, and edgecc does not
  tile for it; aarch64 without +fullfp16): FP16 weight storage only, widened to FP32 in each kernel;
  the compile says so in one line and report.json["passes"]["cast_matmuls_to_fp16"].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes.precision.dense_weights import (
    MIN_WEIGHT_ELEMENTS,
    LayerFallback,
    choose_dense_layer,
    embedding_table,
    fold_weight_transposes,
    layer_names,
)
from edgecc.passes.precision.quantize_dense_layers_int8 import ATTENTION, fallback_summary

# Mean embedding cosine drop (1 - cosine) vs FP32 PyTorch on the real all-MiniLM-L6-v2, 24 held-out
# sentences (data/evaluation_sentences.txt), seq 128, every dense layer's operands FP16: a PyTorch
# simulation (bench/fp16_block_accuracy.py: each FP16 fused multiply-add exact in float64,
# rounded once to FP16; blocks summed in FP32). "32" is what edgecc builds (K 384 and 1536 both take
# blocks of 32): why the block is 32 (cpu.toml k_block); "fp32 accumulation" is what `fmlal` would give.
K_BLOCK_ACCURACY = {"fp32 accumulation (fmlal)": 1.69e-7, "16": 5.74e-7, "32": 9.85e-7, "whole K": 1.52e-5}


def _as_fp16(expr):
    if isinstance(expr, Constant) and expr.value.dtype == "float32":
        return relax.const(expr.value.numpy().astype(np.float16))
    return relax.op.astype(expr, "float16")


def _float32(expr) -> bool:
    info = expr.ty
    return isinstance(info, relax.TensorType) and info.dtype == "float32"


@mutator
class _Fp16Caster(PyExprMutator):
    """fp16_math without a CPU instruction: every matmul's operands FP16 (GPU kernels); without
    fp16_math: large constant weights stored FP16 only."""

    def __init__(self, mod, fp16_math):
        super().__init__(mod)
        self.mod_ = mod
        self.fp16_math = fp16_math
        self.tables = 0

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op):
            return call
        if call.op.name == "relax.matmul" and len(call.args) == 2 and all(_float32(a) for a in call.args):
            return self.rewrite_matmul(*call.args)
        table = embedding_table(call)
        if table is not None:
            self.tables += 1
            rows = self.builder_.emit(relax.op.take(relax.const(table.astype(np.float16)), call.args[1], axis=0))
            return relax.op.astype(rows, "float32")
        return call

    def rewrite_matmul(self, a, b):
        large_weight = isinstance(b, Constant) and int(np.prod(b.value.shape)) >= MIN_WEIGHT_ELEMENTS
        if self.fp16_math:
            return relax.op.matmul(self.half(a), self.half(b), out_dtype="float32")
        if large_weight:
            return relax.op.matmul(a, _as_fp16(b), out_dtype="float32")
        return relax.op.matmul(a, b)

    def half(self, expr):
        return _as_fp16(expr) if isinstance(expr, Constant) else self.builder_.emit(_as_fp16(expr))

    def transform(self):
        return rewrite_relax_functions(self)


def _k_reason(weight) -> str | None:
    from edgecc.schedules.matmul_fp16 import MIN_K_BLOCK, k_block_for

    k = weight.shape[0]
    return None if k_block_for(k) else f"K={k} has no divisor of at least {MIN_K_BLOCK} for the FP16 K blocks"


@mutator
class _DenseFp16Rewriter(PyExprMutator):
    """CPU FP16 arithmetic: dense layers only (matmul by a constant), inputs rounded once each."""

    def __init__(self, mod, ins, keep_fp32=None):
        super().__init__(mod)
        self.mod_ = mod
        self.ins = ins
        self.keep_fp32 = keep_fp32 or {}
        self.names = layer_names(mod)
        self.layers, self.fallbacks, self.tables = [], [], 0
        self.rounded: list = []  # (input var, fp16 var)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        table = embedding_table(call)
        if table is not None:
            self.tables += 1
            rows = self.builder_.emit(relax.op.take(relax.const(table.astype(np.float16)), call.args[1], axis=0))
            return relax.op.astype(rows, "float32")
        chosen = choose_dense_layer(call, self.names, None, self.keep_fp32, self.ins, self.fallbacks, _k_reason)
        if chosen is None:
            return call
        weight, _, name = chosen
        self.layers.append(name)
        return relax.op.matmul(self._rounded(call.args[0]), relax.const(weight.astype(np.float16)), out_dtype="float32")

    def _rounded(self, x):
        for var, rounded in self.rounded:
            if var.same_as(x):
                return rounded
        rounded = self.builder_.emit(relax.op.astype(x, "float16"))
        self.rounded.append((x, rounded))
        return rounded

    def transform(self):
        return rewrite_relax_functions(self)


@dataclass(frozen=True)
class Fp16Stats:
    fp16_math: bool = False  # False: FP16 storage only, computed in FP32
    instruction: str | None = None  # CPU FP16 arithmetic, e.g. "fmla .8h (fullfp16)"
    arithmetic: str = ""  # where the FP16 arithmetic happens, or why there is none
    weights: str = "float16"
    activations: str = "float32"
    accumulation: str = ""
    fp16_layers: tuple[str, ...] = ()
    fallbacks: tuple[LayerFallback, ...] = ()
    fp16_math_layers: int = 0
    fp32_layers: int = 0
    rounded_inputs: int = 0
    embedding_tables: int = 0  # stored as float16
    attention: str = ATTENTION
    timing: str = ""
    timings: tuple[dict, ...] = ()

    def summary(self) -> str:
        if self.instruction:
            return fallback_summary(
                f"FP16 dense layers: {self.fp16_math_layers} on {self.instruction}, {self.accumulation}", self.fallbacks
            )
        if self.fp16_math:
            return f"FP16: {self.arithmetic}"
        return f"FP16 storage only: {self.arithmetic}; weights stored FP16, computed in FP32"


def storage_only_reason(target) -> str:
    arch = getattr(target, "arch", "")
    name = getattr(target, "name", "target")
    if arch in ("x86_64", "x86"):
        return (
            f"'{name}' is an x86 CPU, which has no FP16 arithmetic edgecc uses (AVX512-FP16 exists only "
            "on Intel Sapphire Rapids and later)"
        )
    if arch in ("aarch64", "arm64"):
        return f"'{name}' has no FP16 arithmetic (+fullfp16)"
    return f"'{name}' has no FP16 arithmetic (capabilities.fp16_math)"


def cast_dense_layers_fp16(mod, ins, keep_fp32=None):
    """(module, Fp16Stats) with every dense layer `ins` can take in FP16 arithmetic."""
    from edgecc.schedules.parameters import schedule_parameters

    rewriter = _DenseFp16Rewriter(fold_weight_transposes(mod), ins, keep_fp32)
    result = relax.transform.DeadCodeElimination()(rewriter.transform())
    block = schedule_parameters()["matmul_fp16"]["k_block"]
    stats = Fp16Stats(
        True,
        f"{ins.name} .{ins.lanes}h ({ins.feature})",
        "CPU dense layers",
        weights=f"float16, packed for the {ins.lanes}-lane FP16 tile at compile time",
        activations="rounded to float16 at run time; softmax, LayerNorm, reductions stay FP32",
        accumulation=f"FP16 accumulators over K blocks of at most {block} products, FP32 across blocks",
        fp16_layers=tuple(rewriter.layers),
        fallbacks=tuple(rewriter.fallbacks),
        fp16_math_layers=len(rewriter.layers),
        fp32_layers=len(rewriter.fallbacks),
        rounded_inputs=len(rewriter.rounded),
        embedding_tables=rewriter.tables,
    )
    return result, stats


@tvm.transform.module_pass(opt_level=0, name="cast_matmuls_to_fp16")
class CastMatmulsToFp16:
    """`instruction`: the CPU's FP16 multiply-add (edgecc.schedules.matmul_fp16.fp16_instruction), or
    None; `fp16_math`: the target has FP16 arithmetic (GPU kernels when there is no CPU instruction)."""

    def __init__(self, fp16_math: bool = True, instruction=None, target=None, timed: bool = False):
        self.fp16_math = fp16_math or instruction is not None
        self.instruction = instruction
        self.target = target
        self.timed = timed
        self.stats = Fp16Stats(self.fp16_math)

    @property
    def description(self) -> str:
        if self.instruction is not None:
            return f"fp16 math on {self.instruction.name} .{self.instruction.lanes}h"
        return "fp16 math" if self.fp16_math else "fp16 weight storage only (no fp16 math on target)"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        mod = fold_weight_transposes(mod)
        if self.instruction is not None:
            return self._dense_fp16(mod)
        caster = _Fp16Caster(mod, self.fp16_math)
        result = relax.transform.DeadCodeElimination()(caster.transform())
        arithmetic = (
            "every matmul's operands FP16, FP32 accumulation in the GPU kernels"
            if self.fp16_math
            else storage_only_reason(self.target)
        )
        self.stats = Fp16Stats(
            self.fp16_math,
            None,
            arithmetic,
            activations="float16" if self.fp16_math else "float32",
            embedding_tables=caster.tables,
        )
        return result

    def _dense_fp16(self, mod):
        from edgecc.passes.precision.low_precision_timing import slower_layers

        keep_fp32, timings, note = slower_layers(
            mod,
            self.target,
            self.instruction,
            "fp16",
            self.timed,
            lambda m: cast_dense_layers_fp16(m, self.instruction)[0],
        )
        mod, stats = cast_dense_layers_fp16(mod, self.instruction, keep_fp32)
        self.stats = replace(stats, timing=note, timings=tuple(t.to_dict() for t in timings))
        return mod
