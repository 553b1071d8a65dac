"""Kernels without a reduction (reshape / transpose / concat chains, activations), and the generic
last resort for kernels no family rule knows.

Elementwise: every stage inlined into the last one, so intermediates never reach memory, then
parallel over rows with the last axis vectorised when it is whole vectors. A vector over the
flattened index would straddle rows and, through inlined transposes and concats, gather element
by element (sparse attention's key windows: 2.3 -> 1.2 ms).

Generic: parallel over the leading spatial loops, nothing else. It keeps a kernel off one core,
but it is a fallback, and the schedule summary lists every kernel that got only this.
"""

from __future__ import annotations

from edgecc.schedules.common import (
    GENERIC_SOURCE,
    iter_types,
    live_blocks,
    loop_extent,
    stored_dtype,
    try_inline,
    vectorize_innermost,
)
from edgecc.schedules.rule import KernelView


def no_reduction(kernel: KernelView) -> bool:
    return bool(kernel.blocks) and not any("2" in iter_types(kernel.sch, b) for b in kernel.blocks)


def is_gather(kernel: KernelView) -> bool:
    return any(kernel.sch.get(b).name_hint.startswith("T_take") for b in kernel.blocks)


class ElementwiseRule:
    name = "elementwise"

    def matches(self, kernel: KernelView) -> bool:
        return no_reduction(kernel) and not is_gather(kernel)

    def apply(self, kernel: KernelView) -> list:
        sch = kernel.sch
        blocks = _inline_into_last(sch, kernel.blocks)
        for block in blocks:
            schedule_injective(sch, block, kernel.lanes)
        return []


class GenericRule:
    name = GENERIC_SOURCE.removeprefix("rule:")

    def matches(self, kernel: KernelView) -> bool:
        return bool(kernel.blocks)

    def apply(self, kernel: KernelView) -> list:
        for block in kernel.blocks:
            schedule_leading_parallel(kernel.sch, block, kernel.lanes)
        return []


def _inline_into_last(sch, blocks) -> list:
    """Inline every stage into the last one; stages that cannot be inlined stay."""
    for block in blocks[:-1]:
        try_inline(sch, block)
    return live_blocks(sch, blocks)


def schedule_injective(sch, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    if len(loops) > 1:
        sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
        if "bool" not in stored_dtype(sch.get(block)):
            vectorize_innermost(sch, block, lanes)
        return
    fused = loops[0]
    extent = loop_extent(sch, fused)
    # LLVM cannot store a vector of bools through TVM's lowering; those stay scalar.
    writes_bool = "bool" in stored_dtype(sch.get(block))
    vec = lanes if extent and extent % lanes == 0 and not writes_bool else 1
    if vec > 1:
        outer, inner = sch.split(fused, [None, vec])
        sch.parallel(outer)
        sch.vectorize(inner)
    else:
        sch.parallel(fused)


def schedule_leading_parallel(sch, block, lanes: int) -> None:
    types = iter_types(sch, block)
    loops = sch.get_loops(block)
    leading = []
    for loop, kind in zip(loops, types):
        if kind != "0":
            break
        leading.append(loop)
    if len(leading) == len(loops) and loops:
        schedule_injective(sch, block, lanes)
    elif leading:
        sch.parallel(sch.fuse(*leading) if len(leading) > 1 else leading[0])
