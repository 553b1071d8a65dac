"""Pad a constant-weight matmul's output columns to whole vector tiles, and slice them back.

The CPU matmul schedule vectorises over the output columns. TinyBERT's hidden size 312 is no
multiple of AVX-512's 16 lanes, so its 312-wide matmuls (QKV, attention output, FFN down: 70% of
the model's time) ran on 8-lane vectors at a third of peak instead of the 50% the 1200-wide FFN
kernel reaches. Here `matmul(x, W[K, N])` becomes `matmul(x, W[K, N'])[..., :N]`, W given N' - N
zero columns (N' = N rounded up to a whole tile): the kernel runs on full vectors and the slice
(a copy of the output, fused into its consumer) gives every later op the real N columns.

In NHWC graphs `pad_channels_to_vectors` already carries padded channels through the whole graph;
this pass only pads what is still unpadded, so the two never pad the same matmul twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from edgecc.passes._bindings import binding_map, replace_bindings
from edgecc.passes._layout_chains import dtype, is_op, static_shape
from edgecc.passes.pad_channels_to_vectors import padded_channels

# Pad only where the extra columns cost at most this much more arithmetic.
MAX_GROWTH = 1.05


def padded_columns(columns: int, lanes: int) -> int | None:
    """N' for an N worth padding, or None."""
    return padded_channels(columns, lanes, MAX_GROWTH)


def _plan(value, lanes: int):
    """(data, weight array, N') for a matmul to pad, else None."""
    if not is_op(value, "relax.matmul") or len(value.args) != 2 or dtype(value) != "float32":
        return None
    data, weight = value.args
    if not isinstance(weight, Constant) or len(weight.value.shape) != 2 or static_shape(value) is None:
        return None
    target = padded_columns(int(weight.value.shape[1]), lanes)
    return None if target is None else (data, weight.value.numpy(), target)


@dataclass(frozen=True)
class PadMatmulColumnsStats:
    matmuls_padded: int = 0
    columns_added: int = 0  # over all padded matmuls


@tvm.transform.module_pass(opt_level=0, name="pad_matmul_columns")
class PadMatmulColumns:
    """Constant-weight matmuls with a column count that is no whole vector get zero columns (module docstring)."""

    def __init__(self, lanes: int = 16):
        self.lanes = lanes
        self.stats = PadMatmulColumnsStats()

    @property
    def description(self) -> str:
        return f"to multiples of {self.lanes} lanes"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        added = []

        def find(func):
            plans = {}
            for var, value in binding_map(func).items():
                plan = _plan(value, self.lanes)
                if plan is None:
                    continue
                data, weight, target = plan
                columns = weight.shape[1]
                added.append(target - columns)
                padded = np.ascontiguousarray(np.pad(weight, [(0, 0), (0, target - columns)]))

                def make(mutator, data=data, padded=padded, columns=columns):
                    wide = mutator.builder_.emit(relax.op.matmul(mutator.visit_expr(data), relax.const(padded)))
                    rank = len(static_shape(wide))
                    return relax.op.strided_slice(wide, axes=[rank - 1], begin=[0], end=[columns])

                plans[var] = make
            return plans

        result = replace_bindings(mod, find)
        self.stats = PadMatmulColumnsStats(len(added), sum(added))
        return result
