"""Every op that indexes a tensor with indices from the caller (or computed in the graph) clamps them
into the tensor, so the library never reads or writes out of bounds.

The Relax ONNX frontend lowers Gather to `R.take(table, ids, mode="fast")`, GatherElements to
`R.gather_elements`, GatherND to `R.gather_nd`, ScatterElements (and Scatter, MaxUnpool) to
`R.scatter_elements` and ScatterND to `R.scatter_nd`, after mapping a negative index i to i + n (ONNX's
wrap-around; scatter_elements's kernel wraps it itself). None of TVM's kernels checks an index: a token
id past the vocabulary read memory past the embedding table (values ~1e20), a scatter index of 1e6
wrote far past the output buffer (a segfault), an index equal to the row width wrote into the next
row. edgecc checks the inputs that flow straight into an index operand before they reach the library
(`valid_range` in the manifest, frontend/onnx_import.py's index_ranges), but indices computed in the
graph are not known there, and a deployed library is also called by code that skips that check (the
C API of a bundle, a user's own loader). So every such op whose indices are not compile-time
constants clamps them: takes become mode="clip"; the others get `min(max(i, 0), n - 1)` (after the
wrap, for scatter_elements) on their index operand, n the extent of the axis each index selects
(per coordinate for gather_nd / scatter_nd). An index below -n reads or writes position 0, one past
the end the last position: a wrong element, never a wild read or write. Clipping costs two compares
per index (measured on TinyBERT-4: bench/gather_clamp.py).

Ops with constant indices (shape arithmetic, sparse attention's slot tables) are left as they are:
their indices are checked here, at compile time, and a constant index outside the tensor is an error
in the model, reported as such. RoiAlign and MaxRoiPool read the batch image each box names (a float in
rois[:, 0]) unchecked too: that column is clamped into the batch. (OneHot needs nothing: its kernel
compares each index with each position, and an index outside the depth gives all off values, as
ONNX says.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from edgecc.errors import ModelError
from edgecc.passes._bindings import binding_map, replace_bindings
from edgecc.passes._layout_chains import is_op, static_shape

GATHERS = ("relax.take", "relax.gather_elements", "relax.gather_nd")
SCATTERS = ("relax.scatter_elements", "relax.scatter_nd")
ROI_POOLS = ("relax.vision.roi_align", "relax.vision.roi_pool")  # rois[:, 0] is a batch index (as a float)


@dataclass(frozen=True)
class ClampGatherIndicesStats:
    gathers_clamped: int = 0  # take / gather_elements / gather_nd of caller-given (or computed) indices
    gathers_constant_indices: int = 0  # gathers of compile-time constant indices, checked in range here
    scatters_clamped: int = 0  # scatter_elements / scatter_nd of caller-given (or computed) indices
    scatters_constant_indices: int = 0  # scatters of constant indices, checked in range here
    roi_batch_indices_clamped: int = 0  # RoiAlign / MaxRoiPool whose rois name a batch image


def _axis(call, rank: int) -> int:
    axis = call.attrs.axis
    return int(axis) % rank if axis is not None else 0


def _extents(call) -> tuple[list[int] | None, bool]:
    """(the extent each index selects from, whether they lie along the indices' last axis): one
    extent for take / gather_elements / scatter_elements, one per coordinate for gather_nd /
    scatter_nd (indices [..., m] address data axes batch_dims .. batch_dims + m - 1)."""
    shape = static_shape(call.args[0])
    if not shape:
        return None, False
    name = call.op.name
    if name in ("relax.gather_nd", "relax.scatter_nd"):
        indices_shape = static_shape(call.args[1])
        if not indices_shape:
            return None, True
        start = _first_coordinate_axis(call)
        return shape[start : start + indices_shape[-1]], True
    return [shape[_axis(call, len(shape))]], False


def _checked_constant(call):
    """The constant index operand, checked against the tensor: an index outside [-n, n) is an error in
    the model; negative ones are wrapped here (i + n), so no kernel ever sees one."""
    extents, per_coordinate = _extents(call)
    indices = call.args[1].value.numpy()
    if extents is None or indices.size == 0:
        return None
    high = np.asarray(extents) if per_coordinate else extents[0]
    outside = (indices < -high) | (indices >= high)
    if outside.any():
        raise ModelError(
            f"a constant index of a {call.op.name.removeprefix('relax.')} is outside its tensor "
            f"(index {int(indices[outside].flat[0])}, extents {list(extents)}): the model reads or writes "
            "past the end of a tensor"
        )
    if not (indices < 0).any():
        return None
    return relax.const(np.where(indices < 0, indices + high, indices).astype(indices.dtype))


def _first_coordinate_axis(call) -> int:
    """The data axis a gather_nd / scatter_nd index's first coordinate selects along."""
    return int(call.attrs.batch_dims) if call.op.name == "relax.gather_nd" else 0


def _clamp(indices, extent, last, wrap: bool):
    """`indices` clamped into [0, last]; with `wrap`, a negative one is first moved up by `extent` (i + n)."""
    dtype = str(indices.ty.dtype)
    if wrap:
        negative = relax.op.less(indices, relax.const(0, dtype))
        indices = relax.op.where(negative, relax.op.add(indices, extent), indices)
    return relax.op.minimum(relax.op.maximum(indices, relax.const(0, dtype)), last)


def _static_clamp(indices, extents: list[int], per_coordinate: bool, wrap: bool):
    dtype = str(indices.ty.dtype)
    extent = np.asarray(extents if per_coordinate else extents[0], dtype=dtype)
    return _clamp(indices, relax.const(extent, dtype), relax.const(extent - 1, dtype), wrap)


def _runtime_clamp(call, indices, wrap: bool):
    """The same clamp for symbolic shapes: the extents read from the data's shape at run time."""
    dtype = str(indices.ty.dtype)
    shape = relax.op.shape_to_tensor(relax.op.shape_of(call.args[0]))
    name = call.op.name
    if name in ("relax.gather_nd", "relax.scatter_nd"):
        start = _first_coordinate_axis(call)
        extent = relax.op.strided_slice(shape, axes=[0], begin=[start], end=[start + indices.ty.shape[-1]])
    else:
        rank = len(call.args[0].ty.shape)
        extent = relax.op.take(shape, relax.const(_axis(call, rank), "int64"), axis=0)
    if dtype != "int64":
        extent = relax.op.astype(extent, dtype)
    return _clamp(indices, extent, relax.op.subtract(extent, relax.const(1, dtype)), wrap)


def _rebuilt(call, new_indices, take_mode: str = "clip"):
    """`call` rebuilt over the mutated function, its index operand replaced by `new_indices(operand)`."""
    name = call.op.name

    def make(mutator):
        args = [mutator.visit_expr(arg) for arg in call.args]
        args[1] = new_indices(args[1])
        if name == "relax.take":
            return relax.op.take(args[0], args[1], axis=call.attrs.axis, mode=take_mode)
        if name == "relax.gather_elements":
            return relax.op.gather_elements(args[0], args[1], axis=int(call.attrs.axis))
        if name == "relax.gather_nd":
            return relax.op.gather_nd(args[0], args[1], batch_dims=int(call.attrs.batch_dims))
        if name == "relax.scatter_elements":
            return relax.op.scatter_elements(*args, axis=int(call.attrs.axis), reduction=str(call.attrs.reduction))
        return relax.op.scatter_nd(*args, reduction=str(call.attrs.reduction))

    return make


def _clamped(call):
    """`call` with its index operand clamped into the tensor (a take's by its own mode="clip")."""
    extents, per_coordinate = _extents(call)
    wrap = call.op.name == "relax.scatter_elements"  # its kernel wraps negative indices; the others' are wrapped
    if call.op.name == "relax.take":
        return _rebuilt(call, lambda indices: indices)
    if extents is not None:
        return _rebuilt(call, lambda indices: _static_clamp(indices, extents, per_coordinate, wrap))
    return _rebuilt(call, lambda indices: _runtime_clamp(call, indices, wrap))


def _roi_batches_clamped(call):
    """RoiAlign / MaxRoiPool read image rois[i, 0] of the batch: that column clamped into [0, N - 1]
    (NaN -> 0), the box coordinates left as they are (the kernels clip those to the image)."""

    def make(mutator):
        data, rois = (mutator.visit_expr(arg) for arg in call.args)
        dtype = str(rois.ty.dtype)
        shape = static_shape(call.args[0])
        if shape:
            last = relax.const(float(shape[0] - 1), dtype)
        else:
            batch = relax.op.take(relax.op.shape_to_tensor(relax.op.shape_of(data)), relax.const(0, "int64"), axis=0)
            last = relax.op.astype(relax.op.subtract(batch, relax.const(1, "int64")), dtype)
        batch_index = relax.op.strided_slice(rois, axes=[1], begin=[0], end=[1])
        boxes = relax.op.strided_slice(rois, axes=[1], begin=[1], end=[5])
        zero = relax.const(0.0, dtype)
        inside = relax.op.greater_equal(batch_index, zero)  # False for NaN as well as below 0
        safe = relax.op.where(inside, relax.op.minimum(batch_index, last), zero)
        return relax.Call(call.op, [data, relax.op.concat([safe, boxes], axis=1)], call.attrs, call.ty_args)

    return make


def _needs_clamp(value) -> bool:
    if is_op(value, "relax.take"):
        return str(value.attrs.mode) == "fast"
    return any(is_op(value, name) for name in GATHERS + SCATTERS)


@tvm.transform.module_pass(opt_level=0, name="clamp_gather_indices")
class ClampGatherIndices:
    """Every gather or scatter with non-constant indices clamps them into its tensor."""

    description = "gathers and scatters of caller-given indices clamp them into the tensor (never out of bounds)"

    def __init__(self):
        self.stats = ClampGatherIndicesStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        counts = {"gathers_clamped": 0, "gathers_constant_indices": 0, "scatters_clamped": 0}
        counts["scatters_constant_indices"] = counts["roi_batch_indices_clamped"] = 0

        def find(func):
            found = {}
            for var, value in binding_map(func).items():
                if any(is_op(value, name) for name in ROI_POOLS) and not isinstance(value.args[1], Constant):
                    found[var] = _roi_batches_clamped(value)
                    counts["roi_batch_indices_clamped"] += 1
                    continue
                if not _needs_clamp(value):
                    continue
                kind = "scatters" if value.op.name in SCATTERS else "gathers"
                if isinstance(value.args[1], Constant):
                    wrapped = _checked_constant(value)
                    if wrapped is not None:
                        found[var] = _rebuilt(value, lambda _, wrapped=wrapped: wrapped, take_mode="fast")
                    counts[f"{kind}_constant_indices"] += 1
                    continue
                found[var] = _clamped(value)
                counts[f"{kind}_clamped"] += 1
            return found

        result = replace_bindings(mod, find)
        self.stats = ClampGatherIndicesStats(**counts)
        return result
