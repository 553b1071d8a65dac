"""Shared by the fusion passes: see through layout-only ops to the tensor they read.

A "layout chain" is a run of `reshape`, `permute_dims` and multiply/divide by a scalar constant
between a tensor and its consumer (the ONNX importer's view of `x.view(B, S, H, D).transpose(1, 2)
* scale`). A kernel that reads the source tensor through the chain's index map does the same work
without materialising the reshaped / transposed / scaled copy. Where a caller allows it, a `take`
with a constant 1-D index (sparse attention's key gather) is a step too: the kernel then reads the
index table, passed to it as an extra argument, instead of a gathered copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.ir.expr import Constant

LAYOUT_OPS = ("relax.reshape", "relax.permute_dims")
SCALE_OPS = ("relax.multiply", "relax.divide")


def is_op(expr, *names: str) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in names


def static_shape(expr) -> list[int] | None:
    info = getattr(expr, "ty", None)
    if not isinstance(info, relax.TensorType) or info.shape is None:
        return None
    try:
        return [int(d) for d in info.shape]
    except TypeError:
        return None  # symbolic


def dtype(expr) -> str | None:
    info = getattr(expr, "ty", None)
    return str(info.dtype) if isinstance(info, relax.TensorType) else None


def scalar_constant(expr) -> float | None:
    """The value of a one-element float constant, else None."""
    if not isinstance(expr, Constant) or not hasattr(expr.value, "numpy"):
        return None
    array = expr.value.numpy()
    if array.size != 1 or array.dtype.kind != "f":
        return None
    return float(array.reshape(()))


@dataclass
class Chain:
    """`source` seen through `steps` (consumer side first): [("permute", axes), ("reshape", in, out),
    ("multiply", c) or ("divide", c), ("take", axis, index constant)]."""

    source: relax.Expr
    steps: list = field(default_factory=list)

    @property
    def shape(self) -> list[int]:
        return static_shape(self.source)

    @property
    def tables(self) -> list:
        """The index constants of the chain's `take` steps, in the order `index` reads them."""
        return [step[2] for step in self.steps if step[0] == "take"]

    def index(self, indices: list, tables=()) -> list:
        """Indices into `source` of the chain's output element at `indices`; `tables`: a tensor for
        each of `self.tables`."""
        tables = iter(tables)
        for step in self.steps:
            if step[0] == "permute":
                axes = step[1]
                source = [None] * len(axes)
                for out_axis, in_axis in enumerate(axes):
                    source[in_axis] = indices[out_axis]
                indices = source
            elif step[0] == "reshape":
                indices = reshape_index(indices, step[2], step[1])
            elif step[0] == "take":
                axis = step[1]
                indices = [*indices[:axis], next(tables)[indices[axis]], *indices[axis + 1 :]]
        return indices

    def value(self, tensor, indices: list, tables=()):
        """The chain's output element at `indices`, read from the TE tensor standing for `source`."""
        result = tensor[tuple(self.index(list(indices), tables))]
        for step in reversed(self.steps):  # the scalings nearest the source apply first
            if step[0] == "multiply":
                result = result * tirx.const(step[1], result.dtype)
            elif step[0] == "divide":
                result = result / tirx.const(step[1], result.dtype)
        return result

    @property
    def has_scaling(self) -> bool:
        return any(step[0] in ("multiply", "divide") for step in self.steps)


def reshape_index(indices: list, out_shape: list[int], in_shape: list[int]) -> list:
    """Map an index of the reshaped tensor (out_shape) to the tensor before it (in_shape).

    Dimensions are matched in groups of equal size products so that a split (312 -> 12 x 26) is a
    sum (h * 26 + d) and only merges need a division; anything else goes through one linear index.
    """
    result, i, j = [], 0, 0
    while i < len(out_shape) or j < len(in_shape):
        out_group, in_group = [i], [j]
        out_size = out_shape[i] if i < len(out_shape) else 1
        in_size = in_shape[j] if j < len(in_shape) else 1
        while out_size != in_size:
            if out_size < in_size:
                i += 1
                if i >= len(out_shape):
                    return _linear_reshape_index(indices, out_shape, in_shape)
                out_group.append(i)
                out_size *= out_shape[i]
            else:
                j += 1
                if j >= len(in_shape):
                    return _linear_reshape_index(indices, out_shape, in_shape)
                in_group.append(j)
                in_size *= in_shape[j]
        out_group = [k for k in out_group if k < len(out_shape)]
        in_group = [k for k in in_group if k < len(in_shape)]
        linear = tirx.const(0, "int64") if not out_group else None
        for k in out_group:
            linear = indices[k] if linear is None else linear * out_shape[k] + indices[k]
        result.extend(_unravel(linear, [in_shape[k] for k in in_group]))
        i, j = i + 1, j + 1
    return result


def _unravel(linear, dims: list[int]) -> list:
    if len(dims) == 1:
        return [linear]
    out = []
    for position, dim in enumerate(dims):
        stride = int(np.prod(dims[position + 1 :], dtype=np.int64))
        value = tirx.floordiv(linear, stride) if stride > 1 else linear
        out.append(tirx.floormod(value, dim) if position > 0 else value)
    return out


def _linear_reshape_index(indices, out_shape, in_shape):
    linear = None
    for k, dim in enumerate(out_shape):
        linear = indices[k] if linear is None else linear * dim + indices[k]
    return _unravel(linear if linear is not None else tirx.const(0, "int64"), in_shape)


def strip_chain(expr, producer, allow_scaling: bool = True, stop=lambda expr: False, allow_take: bool = False) -> Chain:
    """Walk back from `expr` through layout-only producers; `producer(var)` gives a var's bound value.

    Stops at anything else, at a non-float32 or dynamically shaped tensor, or where `stop` says so.
    """
    chain = Chain(expr)
    while True:
        value = producer(chain.source)
        if value is None or stop(value) or static_shape(value) is None or dtype(value) != "float32":
            return chain
        if is_op(value, "relax.permute_dims"):
            ndim = len(static_shape(value))
            axes = [int(a) for a in value.attrs.axes] if value.attrs.axes is not None else list(reversed(range(ndim)))
            axes = [a % ndim for a in axes]
            step, nxt = ("permute", axes), value.args[0]
        elif is_op(value, "relax.reshape"):
            before = static_shape(value.args[0])
            if before is None:
                return chain
            step, nxt = ("reshape", before, static_shape(value)), value.args[0]
        elif allow_scaling and is_op(value, *SCALE_OPS):
            a, b = value.args
            name = value.op.name.split(".")[-1]
            if scalar_constant(b) is not None and static_shape(a) == static_shape(value):
                step, nxt = (name, scalar_constant(b)), a
            elif name == "multiply" and scalar_constant(a) is not None and static_shape(b) == static_shape(value):
                step, nxt = (name, scalar_constant(a)), b
            else:
                return chain
        elif allow_take and _constant_take(value):
            step, nxt = ("take", int(value.attrs.axis) % len(static_shape(value)), value.args[1]), value.args[0]
        else:
            return chain
        if static_shape(nxt) is None or dtype(nxt) != "float32":
            return chain
        chain.steps.append(step)
        chain.source = nxt


def _constant_take(value) -> bool:
    """A take along one axis by a constant 1-D integer index (rank kept, so the chain's indices map 1:1)."""
    if not is_op(value, "relax.take") or not isinstance(value.args[1], Constant):
        return False
    index = value.args[1].value
    return len(index.shape) == 1 and "int" in str(index.dtype)
