"""Convolutions in NHWC (channels last) on CPUs, the layout change paid once at the model's edges.

PyTorch exports convolutions in NCHW. Channels last makes every convolution family a kernel the
CPU schedules know: a 1x1 convolution is a matmul [pixels, Cin] x [Cin, Cout] on the matmul
register tile, a KxK one the same tile with the reduction over (kh, kw, Cin), a depthwise one
vectorised over channels with each tap's weights contiguous. Relax's ConvertLayout rewrites each
conv to NHWC / HWIO and carries the layout through the elementwise ops, reductions and
transposes after it, so a transpose remains only where the graph itself leaves image layout (the
model input, a reshape into tokens). Then:

- a transpose pair that ConvertLayout left around elementwise ops (SwiftFormer's layer scale:
  tokens -> NCHW -> x * gamma -> NHWC) cancels: the ops run on the untransposed tensor with their
  constant operands transposed instead;
- an identity transpose (NCHW -> NHWC of a tensor that was NHWC already) disappears;
- inference BatchNorm with constant statistics becomes x * scale + shift with both folded at
  compile time, so FuseOps puts it into the epilogue of the kernel before it;
- weight and bias transposes are constants, folded at compile time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes._layout_chains import is_op, static_shape

DATA_LAYOUT, KERNEL_LAYOUT = "NHWC", "HWIO"
_UNARY = ("relax.erf", "relax.tanh", "relax.exp", "relax.sigmoid", "relax.nn.relu", "relax.sqrt", "relax.negative")
_BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide")


@mutator
class _TransposePairCanceller(PyExprMutator):
    """permute(P2, f(permute(P1, a), constants...)) with P2 after P1 the identity -> f'(a, ...)."""

    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod
        self.cancelled = 0
        self.identities = 0
        self.batch_norms = 0

    def _value(self, expr):
        return self.lookup_binding(expr) if isinstance(expr, relax.Var) else expr

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not is_op(call, "relax.permute_dims") or call.attrs.axes is None:
            return call
        axes = [int(a) for a in call.attrs.axes]
        if axes == list(range(len(axes))):
            self.identities += 1
            return call.args[0]
        rebuilt = self._rebuild(call.args[0], axes)
        if rebuilt is None:
            return call
        self.cancelled += 1
        return rebuilt

    def _rebuild(self, expr, outer_axes):
        """`expr` (a chain of elementwise ops over permute(a, P1)) recomputed on `a`, or None."""
        value = self._value(expr)
        if is_op(value, "relax.permute_dims") and value.attrs.axes is not None:
            inner = [int(a) for a in value.attrs.axes]
            if len(inner) == len(outer_axes) and [inner[a] for a in outer_axes] == list(range(len(inner))):
                self._inner_axes = inner
                return value.args[0]
            return None
        if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
            return None
        if value.op.name in _UNARY:
            source = self._rebuild(value.args[0], outer_axes)
            return None if source is None else relax.Call(value.op, [self._emitted(source)], value.attrs)
        if value.op.name not in _BINARY or len(value.args) != 2:
            return None
        rank = len(outer_axes)
        tensor_side = [i for i, arg in enumerate(value.args) if not isinstance(arg, Constant)]
        if len(tensor_side) != 1:
            return None
        source = self._rebuild(value.args[tensor_side[0]], outer_axes)
        if source is None:
            return None
        constant = value.args[1 - tensor_side[0]]
        array = constant.value.numpy()
        if array.ndim > rank:
            return None
        if array.ndim:  # broadcast to the permuted rank, then into the source's axis order
            array = np.transpose(array.reshape((1,) * (rank - array.ndim) + array.shape), np.argsort(self._inner_axes))
        operands = [self._emitted(source), relax.const(np.ascontiguousarray(array))]
        if tensor_side[0] == 1:
            operands.reverse()
        return relax.Call(value.op, operands, value.attrs)

    def _emitted(self, expr):
        """A rebuilt op bound to a variable (the last one of a chain is bound by the caller's binding,
        so later passes see the op itself, not an alias)."""
        return expr if isinstance(expr, relax.Var) else self.builder_.emit(expr)

    def visit_tuple_getitem_(self, item):
        item = super().visit_tuple_getitem_(item)
        value = self._value(item.tuple_value)
        if item.index != 0 or not is_op(value, "relax.nn.batch_norm") or value.attrs.training:
            return item
        folded = _folded_batch_norm(value)
        if folded is None:
            return item
        self.batch_norms += 1
        return folded

    def transform(self):
        return rewrite_relax_functions(self)


def _folded_batch_norm(call):
    """x * scale + shift for an inference BatchNorm whose four parameters are constants, else None."""
    data, gamma, beta, mean, var = call.args
    shape = static_shape(data)
    if shape is None or not all(isinstance(p, Constant) for p in (gamma, beta, mean, var)):
        return None
    attrs = call.attrs
    g, b, m, v = (p.value.numpy().astype("float64") for p in (gamma, beta, mean, var))
    g = g if attrs.scale else np.ones_like(v)
    b = b if attrs.center else np.zeros_like(v)
    scale = g / np.sqrt(v + float(attrs.epsilon))
    shift = b - m * scale
    axis = int(attrs.axis) % len(shape)
    broadcast = [1] * len(shape)
    broadcast[axis] = shape[axis]
    dtype = str(data.ty.dtype)
    scaled = relax.op.multiply(data, relax.const(scale.reshape(broadcast).astype(dtype)))
    return relax.op.add(scaled, relax.const(shift.reshape(broadcast).astype(dtype)))


def count_convs(mod, layout: str) -> int:
    found = []
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(
                func,
                lambda e: found.append(1) if (is_op(e, "relax.nn.conv2d") and e.attrs.data_layout == layout) else None,
            )
    return len(found)


@dataclass(frozen=True)
class ConvertConvsStats:
    convs_converted: int = 0
    transpose_pairs_cancelled: int = 0
    identity_transposes_removed: int = 0
    batch_norms_folded: int = 0


@tvm.transform.module_pass(opt_level=0, name="convert_convs_to_nhwc")
class ConvertConvsToNHWC:
    """NCHW convolutions -> NHWC / HWIO, the layout change at the model's edges (module docstring)."""

    description = "NHWC / HWIO convolutions, BatchNorm folded, transposes at the model's edges"

    def __init__(self):
        self.stats = ConvertConvsStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        convs = count_convs(mod, "NCHW")
        if not convs:
            self.stats = ConvertConvsStats()
            return mod
        mod = relax.transform.ConvertLayout({"relax.nn.conv2d": [DATA_LAYOUT, KERNEL_LAYOUT]})(mod)
        mod = relax.transform.FoldConstant()(mod)
        canceller = _TransposePairCanceller(mod)
        mod = relax.transform.DeadCodeElimination()(canceller.transform())
        self.stats = ConvertConvsStats(convs, canceller.cancelled, canceller.identities, canceller.batch_norms)
        return relax.transform.FoldConstant()(mod)
