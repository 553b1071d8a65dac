"""FP16 matmuls with FP32 accumulation; softmax, LayerNorm and reductions stay FP32.

Every `matmul` becomes `matmul(a16, b16, out_dtype="float32")`: inputs are rounded to FP16 and the
legalized kernel widens them and accumulates in FP32, so only the matmul operands lose precision.
Constant weights (and embedding tables) are stored as FP16, halving their size in the library.

With `fp16_math=False` (targets without FP16 arithmetic) only the weights change: activations stay
FP32 and each kernel widens the FP16 weight on load (storage-only FP16, no speed-up expected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes.precision.dense_weights import MIN_WEIGHT_ELEMENTS, embedding_table, fold_weight_transposes


def _as_fp16(expr):
    if isinstance(expr, Constant) and expr.value.dtype == "float32":
        return relax.const(expr.value.numpy().astype(np.float16))
    return relax.op.astype(expr, "float16")


def _float32(expr) -> bool:
    info = expr.ty
    return isinstance(info, relax.TensorType) and info.dtype == "float32"


@mutator
class _Fp16Caster(PyExprMutator):
    def __init__(self, mod, fp16_math):
        super().__init__(mod)
        self.mod_ = mod
        self.fp16_math = fp16_math

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op):
            return call
        if call.op.name == "relax.matmul" and len(call.args) == 2 and all(_float32(a) for a in call.args):
            return self.rewrite_matmul(*call.args)
        table = embedding_table(call)
        if table is not None:
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
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()


@dataclass(frozen=True)
class Fp16Stats:
    fp16_math: bool = False  # False: FP16 storage only, computed in FP32


@tvm.transform.module_pass(opt_level=0, name="cast_matmuls_to_fp16")
class CastMatmulsToFp16:
    def __init__(self, fp16_math: bool = True):
        self.fp16_math = fp16_math
        self.stats = Fp16Stats(fp16_math)

    @property
    def description(self) -> str:
        return "fp16 math" if self.fp16_math else "fp16 weight storage only (no fp16 math on target)"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        caster = _Fp16Caster(fold_weight_transposes(mod), self.fp16_math)
        return relax.transform.DeadCodeElimination()(caster.transform())
