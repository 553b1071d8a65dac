"""FP16 matmuls with FP32 accumulation; softmax, LayerNorm and reductions stay FP32.

Every `matmul` becomes `matmul(a16, b16, out_dtype="float32")`: inputs are rounded to FP16 and the
legalized kernel widens them and accumulates in FP32, so only the matmul operands lose precision.
Constant weights (and embedding tables) are stored as FP16, halving their size in the library.

With `fp16_math=False` (targets without FP16 arithmetic) only the weights change: activations stay
FP32 and each kernel widens the FP16 weight on load (storage-only FP16, no speed-up expected).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from .dense_weights import MIN_WEIGHT_ELEMENTS, embedding_table, fold_weight_transposes


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


def cast_matmuls_to_fp16(mod: tvm.IRModule, fp16_math: bool = True) -> tvm.IRModule:
    return relax.transform.DeadCodeElimination()(_Fp16Caster(fold_weight_transposes(mod), fp16_math).transform())


class CastMatmulsToFp16:
    def __init__(self, fp16_math: bool):
        self.fp16_math = fp16_math

    def __call__(self, mod):
        return cast_matmuls_to_fp16(mod, self.fp16_math)
