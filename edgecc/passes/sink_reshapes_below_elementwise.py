"""Move reshapes below the elementwise ops that follow them, so those ops follow the matmul directly.

The ONNX export of a transformers Linear on [B, S, H] is reshape -> 2-D matmul -> + bias ->
reshape back to [B, S, N]; GELU and the residual add then run on the 3-D view. FuseOps only puts
elementwise ops into a matmul's epilogue when nothing stands between them, so the reshape left GELU
and the residual add as kernels of their own, each a full trip through memory (MiniLM at seq 1024:
~9 ms of ~300). Rewritten:

    op(reshape(a, S)) -> reshape(op(a), S)                        unary: erf, tanh, exp, sigmoid, ...
    op(reshape(a, S), reshape(b, S)) -> reshape(op(a, b), S)       a and b of one shape
    op(reshape(a, S), y) -> reshape(op(a, reshape(y, shape(a))), S)    y of shape S
    op(reshape(a, S), c) -> reshape(op(a, c), S)                    c a scalar constant
    op(reshape(a, S), c) -> reshape(op(a, c'), S)                   c a per-channel constant [1, .., C]
                                                                    and the reshape keeps the last axis C
    reshape(reshape(a, S), shape(a)) -> a

for op in add, subtract, multiply, divide. Reshapes of the other operand become views at runtime
(RewriteDataflowReshape after lowering), so nothing is copied in their place.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes._layout_chains import is_op, scalar_constant, static_shape

UNARY = ("relax.erf", "relax.tanh", "relax.exp", "relax.sigmoid", "relax.nn.relu", "relax.sqrt")
BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide")


def _per_channel_constant(arg, shape, inner_shape) -> bool:
    """A constant that broadcasts along the last axis only, which the reshape keeps."""
    if not isinstance(arg, Constant) or shape[-1] != inner_shape[-1]:
        return False
    dims = list(arg.value.shape)
    return len(dims) <= len(shape) and dims[-1:] == shape[-1:] and all(d == 1 for d in dims[:-1])


@mutator
class _ReshapeSinker(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod
        self.sunk = 0

    def _reshaped(self, expr):
        """The tensor `expr` is a reshape of, or None."""
        value = self.lookup_binding(expr) if isinstance(expr, relax.Var) else expr
        if is_op(value, "relax.reshape") and static_shape(value.args[0]) is not None:
            return value.args[0]
        return None

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or static_shape(call) is None:
            return call
        shape = static_shape(call)
        if is_op(call, "relax.reshape"):
            inner = self._reshaped(call.args[0])
            return inner if inner is not None and static_shape(inner) == shape else call
        if call.op.name in UNARY:
            source = self._reshaped(call.args[0])
            if source is None:
                return call
            return self._emit_reshaped(relax.Call(call.op, [source], call.attrs), shape)
        if call.op.name not in BINARY or len(call.args) != 2:
            return call
        # a reshaped operand that is broadcast (a conv bias reshaped to [1, C, 1, 1]) stays as it is
        sources = [self._reshaped(arg) if static_shape(arg) == shape else None for arg in call.args]
        inner_shapes = {tuple(static_shape(s)) for s in sources if s is not None}
        if len(inner_shapes) != 1:
            return call
        inner_shape = list(inner_shapes.pop())
        operands = []
        for arg, source in zip(call.args, sources):
            if source is not None:
                operands.append(source)
            elif scalar_constant(arg) is not None:
                operands.append(arg)
            elif _per_channel_constant(arg, shape, inner_shape):  # an NHWC bias or layer scale
                operands.append(relax.const(arg.value.numpy().reshape([1] * (len(inner_shape) - 1) + shape[-1:])))
            elif static_shape(arg) == shape:
                operands.append(self.builder_.emit(relax.op.reshape(arg, inner_shape)))
            else:
                return call  # a broadcast operand: its layout would have to change too
        return self._emit_reshaped(relax.Call(call.op, operands, call.attrs), shape)

    def _emit_reshaped(self, call, shape):
        self.sunk += 1
        return relax.op.reshape(self.builder_.emit(call), shape)

    def transform(self):
        return rewrite_relax_functions(self)


@dataclass(frozen=True)
class SinkReshapesStats:
    reshapes_sunk: int = 0


@tvm.transform.module_pass(opt_level=0, name="sink_reshapes_below_elementwise")
class SinkReshapesBelowElementwise:
    """Reshapes move below the elementwise ops that follow them (see the module docstring)."""

    def __init__(self):
        self.stats = SinkReshapesStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        sinker = _ReshapeSinker(mod)
        result = relax.transform.DeadCodeElimination()(sinker.transform())
        self.stats = SinkReshapesStats(sinker.sunk)
        return result
