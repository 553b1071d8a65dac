"""x / c -> x * (1 / c) for a constant float32 divisor c (fast math).

A division costs a vector divide (on AVX-512 one per 8-16 cycles, on one port) where a multiply
costs half a cycle, and LLVM keeps a `fdiv` by a constant unless the constant is a power of two:
the quotient may differ from x * (1 / c) in the last bit. GELU as the ONNX exporter writes it
divides by sqrt(2) before erf, so every GELU epilogue paid a divide per element besides erf's own:
EfficientFormer-L1's 48 -> 192 convolution + GELU at 56x56 ran 278 us against 256 us with the
multiply (side by side on the 2-core AMX Xeon), the convolution alone 210 us. ONNX Runtime and
OpenVINO rewrite such a division the same way.

The product is within one rounding of the quotient (relative error at most 2^-23). A divisor with
a zero, an infinity, a NaN, or a reciprocal that overflows or is subnormal is left as a division,
so no result changes class (inf, NaN, zero); only float32 divisors are rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes._layout_chains import is_op


def reciprocal(divisor: np.ndarray) -> np.ndarray | None:
    """1 / divisor in float32, or None where the product could differ in kind from the quotient."""
    if divisor.dtype != np.float32 or divisor.size == 0:
        return None
    if not np.all(np.isfinite(divisor)) or np.any(divisor == 0):
        return None
    with np.errstate(all="ignore"):
        result = np.float32(1) / divisor
    if not np.all(np.isfinite(result)) or np.any(np.abs(result) < np.finfo(np.float32).tiny):
        return None
    return result.astype(np.float32)


@mutator
class _DivisionRewriter(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod
        self.rewritten = 0

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not is_op(call, "relax.divide") or not isinstance(call.args[1], Constant):
            return call
        inverse = reciprocal(call.args[1].value.numpy())
        if inverse is None:
            return call
        self.rewritten += 1
        return relax.op.multiply(call.args[0], relax.const(inverse))

    def transform(self):
        return rewrite_relax_functions(self)


@dataclass(frozen=True)
class MultiplyByReciprocalsStats:
    divisions_rewritten: int = 0


@tvm.transform.module_pass(opt_level=0, name="multiply_by_reciprocals")
class MultiplyByReciprocals:
    """x / c -> x * (1 / c) for constant float32 divisors (module docstring)."""

    def __init__(self):
        self.stats = MultiplyByReciprocalsStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _DivisionRewriter(mod)
        result = rewriter.transform()
        self.stats = MultiplyByReciprocalsStats(rewriter.rewritten)
        return result if rewriter.rewritten else mod
