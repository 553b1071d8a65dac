"""Constant matmul weights stored in the order the default matmul schedule reads them.

A [K, N] row-major weight makes the register tile read 48 floats per K-step from rows N floats
apart: one new page every step and a prefetcher that cannot follow. Repacked as panels
[N / T, K, T] (T the tile width), each tile streams one contiguous panel. Measured here on
128x768x3072 and 128x3072x768: 60 -> 150 GFLOP/s with the weights in cache, 51 -> 127 streamed
from memory; 128x384x1536: 135 -> 155. The repack happens once, at compile time, on the constant.

The schedule (`edgecc.schedules`) rewrites a kernel's weight parameter to the panel layout and
records it in the kernel's `edgecc.packed_weights` attribute; `pack_weight_arguments` then gives
every call of that kernel the packed constant. Only parameters that receive a constant at every
call are packed, so no runtime tensor ever needs repacking.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

PACKED_ATTR = "edgecc.packed_weights"
_CALL_TIR = ("relax.call_tir", "relax.call_tir_inplace")


def _call_tir_args(expr) -> list | None:
    """The input arguments of a `call_tir` to a kernel ([] when they are not spelled out as a
    tuple, so nothing about them is assumed), or None for any other expression."""
    if not (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in _CALL_TIR):
        return None
    return list(expr.args[1].fields) if isinstance(expr.args[1], relax.Tuple) else []


def constant_parameters(mod) -> dict[str, set[int]]:
    """{kernel name: input positions that receive a Relax constant at every call of the kernel}."""
    constant = {}

    def visit(expr):
        args = _call_tir_args(expr)
        if args is None:
            return
        name = expr.args[0].name_hint
        here = {i for i, arg in enumerate(args) if isinstance(arg, Constant)}
        constant[name] = constant[name] & here if name in constant else here

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return constant


def panel_layout(n_axis: int, tile: int, ndim: int = 2):
    """Index map of a weight (n on `n_axis`, the other axes K) to panels [N / tile, *K, tile]: a
    2-D matmul weight [K, N] or [N, K], or a convolution's HWIO weight [KH, KW, I, O] (n_axis 3)."""

    def index_map(*indices):
        n = indices[n_axis]
        rest = [index for axis, index in enumerate(indices) if axis != n_axis]
        return (n // tile, *rest, n % tile)

    if ndim == 2:  # TVM reads the map's arity from its signature: spell the cases out
        return lambda a, b: index_map(a, b)
    if ndim == 4:
        return lambda a, b, c, d: index_map(a, b, c, d)
    raise ValueError(f"no panel layout for a {ndim}-D weight")


def pack_array(array: np.ndarray, n_axis: int, tile: int, group: int = 1) -> np.ndarray:
    """`array` in the panel layout of `panel_layout(n_axis, tile, array.ndim)`: [N / tile, *K, tile].
    With `group` > 1 (INT8 / BF16 dot-product kernels, edgecc.schedules.matmul_dot; 2-D weights
    only) [N / tile, K / group, tile, group]: `group` consecutive k of one column side by side, as
    one instruction reads them."""
    moved = np.moveaxis(array, n_axis, -1)
    *rest, n = moved.shape
    if group > 1:
        (k,) = rest
        return np.ascontiguousarray(moved.reshape(k // group, group, n // tile, tile).transpose(2, 0, 3, 1))
    panels = moved.reshape(*rest, n // tile, tile)
    order = [len(rest), *range(len(rest)), len(rest) + 1]
    return np.ascontiguousarray(panels.transpose(order))


def pack_weight_arguments(mod):
    """Give each kernel with packed weight parameters the packed constants at every call.

    Idempotent: an argument already in panel shape is left alone, so it can run after any mix of
    default-scheduled and tuned kernels. Packed kernels get fresh GlobalVars: a GlobalVar carries
    its function's signature, and it is shared with the unpacked module this one was cloned from.
    """
    from tvm.relax.expr import _update_type

    packing, renamed, unpacked_rank = {}, {}, {}
    for gvar, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs and PACKED_ATTR in func.attrs:
            # [param, n_axis, tile] or, for dot-product kernels, [param, n_axis, tile, group]
            packing[gvar.name_hint] = [tuple(int(v) for v in entry) for entry in func.attrs[PACKED_ATTR]]
            # a packed parameter has one axis more than the constant it is made from (two with a group)
            unpacked_rank[gvar.name_hint] = {
                p: len(func.params[p].ty.shape) - (2 if group and group[0] > 1 else 1)
                for p, _, _, *group in packing[gvar.name_hint]
            }
            renamed[gvar.name_hint] = tvm.ir.GlobalVar(gvar.name_hint)
            _update_type(renamed[gvar.name_hint], func.ty)
    if not packing:
        return mod

    @relax.expr_functor.mutator
    class _Packer(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            args = _call_tir_args(call)
            if not args or call.args[0].name_hint not in packing:
                return call
            name = call.args[0].name_hint
            for position, n_axis, tile, *group in packing[name]:
                arg = args[position]
                if isinstance(arg, Constant) and len(arg.value.shape) == unpacked_rank[name][position]:
                    args[position] = relax.const(
                        pack_array(arg.value.numpy(), n_axis, tile, *group), str(arg.value.dtype)
                    )
            return relax.Call(
                call.op, [renamed[name], relax.Tuple(args), *call.args[2:]], call.attrs, call.ty_args, call.span
            )

    packer = _Packer(mod)
    functions = {}
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            func = packer.visit_expr(func)
        functions[renamed.get(gvar.name_hint, gvar)] = func
    return tvm.IRModule(functions, attrs=mod.attrs, global_infos=mod.global_infos)
