"""TVM's FastMathTransform, safe on modules that call external functions.

exp / erf / tanh / softmax become topi's fast_* polynomials (within ~1e-7 relative of libm, but
vectorisable). TVM 0.27's own pass reads `call.op.name` of every call and crashed on a call to an
ExternFunc (`R.call_packed`, which the ONNX importer emits for some Expand / shape graphs: the onnx
backend tests' expand_shape_model3/4 failed to compile). This is the same rewrite, only for calls
of Relax operators.
"""

from __future__ import annotations

import tvm
from tvm import relax, topi
from tvm.relax import PyExprMutator, expr_functor

_FAST = {
    "relax.nn.softmax": lambda bb, call: bb.call_te(topi.nn.fast_softmax, call.args[0], call.attrs.axis),
    "relax.exp": lambda bb, call: bb.call_te(topi.fast_exp, call.args[0]),
    "relax.erf": lambda bb, call: bb.call_te(topi.fast_erf, call.args[0]),
    "relax.tanh": lambda bb, call: bb.call_te(topi.fast_tanh, call.args[0]),
}


@expr_functor.mutator
class _FastMathRewriter(PyExprMutator):
    def visit_call_(self, call):
        if isinstance(call.op, tvm.ir.Op) and call.op.name in _FAST:
            return _FAST[call.op.name](self.builder_, call)
        return super().visit_call_(call)


@tvm.transform.module_pass(opt_level=0, name="fast_math")
class FastMath:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _FastMathRewriter(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()
