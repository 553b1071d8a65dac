"""sigmoid(x) -> 1 / (1 + exp(-x)), so fast math makes it a vectorisable polynomial.

TVM lowers `R.sigmoid` to `tir.sigmoid`, which LLVM turns into one libm `expf` call per element:
a SiLU epilogue (x * sigmoid(x), every MobileViT convolution) then costs more than the
convolution under it (64x64x256 after a 1x1 conv: 4.5 of 6 ms). Written with `exp`,
FastMathTransform (run when lowering, with fast math on; this pass runs only then) replaces it with topi's
`fast_exp`; for large |x| the clamped exponent gives 0 or 1, as sigmoid does.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes._layout_chains import dtype, is_op


@mutator
class _SigmoidExpander(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod
        self.expanded = 0

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not is_op(call, "relax.sigmoid") or "float" not in str(dtype(call)):
            return call
        self.expanded += 1
        one = relax.const(1.0, dtype(call))
        exp = self.builder_.emit(relax.op.exp(relax.op.negative(call.args[0])))
        return relax.op.divide(one, self.builder_.emit(relax.op.add(one, exp)))

    def transform(self):
        return rewrite_relax_functions(self)


@dataclass(frozen=True)
class ExpandSigmoidStats:
    sigmoids_expanded: int = 0


@tvm.transform.module_pass(opt_level=0, name="expand_sigmoid")
class ExpandSigmoid:
    """sigmoid(x) -> 1 / (1 + exp(-x)) for fast math (module docstring)."""

    def __init__(self):
        self.stats = ExpandSigmoidStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        expander = _SigmoidExpander(mod)
        result = expander.transform()
        self.stats = ExpandSigmoidStats(expander.expanded)
        return result if expander.expanded else mod
