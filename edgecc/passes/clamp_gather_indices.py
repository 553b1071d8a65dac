"""Gathers whose indices come from the caller clamp them into the table, so the library never reads
out of bounds.

The Relax ONNX frontend lowers Gather to `R.take(table, ids, mode="fast")` (after mapping a negative
id i to i + rows, ONNX's wrap-around), and "fast" mode reads whatever address `ids` points at: a
token id past the vocabulary read memory past the embedding table (values ~1e20) or crashed the
process. edgecc checks ids against the table before they reach the library (`valid_range` in the
manifest, checked by `edgecc run`, `bench`, the Python API and the host side of a board run), but a
deployed library is also called by code that skips that check (the C API of a bundle, a user's own
loader). So every take whose indices are not compile-time constants becomes mode="clip": an id
below 0 reads row 0, an id past the end reads the last row. A wrong row, never a wild read.
Clipping costs two compares per gathered element (measured on TinyBERT-4: bench/gather_clamp.py).

Takes with constant indices (shape arithmetic, sparse attention's slot tables) are left as they
are: their indices are checked here, at compile time, and a constant index outside the table is an
error in the model, reported as such.
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


@dataclass(frozen=True)
class ClampGatherIndicesStats:
    gathers_clamped: int = 0  # takes of caller-given (or computed) indices, now mode="clip"
    gathers_constant_indices: int = 0  # takes of compile-time constant indices, checked in range here


def _rows(call) -> int | None:
    shape = static_shape(call.args[0])
    if not shape:
        return None
    axis = int(call.attrs.axis) if call.attrs.axis is not None else 0
    return shape[axis % len(shape)]


def _check_constant(call) -> None:
    rows = _rows(call)
    indices = call.args[1].value.numpy()
    if rows is None or indices.size == 0:
        return
    low, high = int(np.min(indices)), int(np.max(indices))
    if low < -rows or high >= rows:
        raise ModelError(
            f"a constant gather index is outside its table of {rows} rows (indices {low}..{high}): "
            "the model reads past the end of a tensor"
        )


@tvm.transform.module_pass(opt_level=0, name="clamp_gather_indices")
class ClampGatherIndices:
    """Every `R.take(..., mode="fast")` with non-constant indices becomes mode="clip"."""

    description = "take with caller-given indices clamps them into the table (never reads out of bounds)"

    def __init__(self):
        self.stats = ClampGatherIndicesStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        clamped, constant = [0], [0]

        def find(func):
            found = {}
            for var, value in binding_map(func).items():
                if not is_op(value, "relax.take") or str(value.attrs.mode) != "fast":
                    continue
                if isinstance(value.args[1], Constant):
                    _check_constant(value)
                    constant[0] += 1
                    continue
                found[var] = (
                    lambda call: (
                        lambda mutator: relax.op.take(
                            mutator.visit_expr(call.args[0]),
                            mutator.visit_expr(call.args[1]),
                            axis=call.attrs.axis,
                            mode="clip",
                        )
                    )
                )(value)
            clamped[0] += len(found)
            return found

        result = replace_bindings(mod, find)
        self.stats = ClampGatherIndicesStats(clamped[0], constant[0])
        return result
