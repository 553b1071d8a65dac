"""Default CPU schedules for pooling and the reductions around it (NHWC, channels innermost).

`pool2d-nhwc` (max / average pooling windows): like a depthwise convolution without weights:
rows in parallel, channels vectorised, the window's taps unrolled, padding read through a bounds
check instead of a padded copy.

`channel-vector-reduction` (global average pooling = mean over H, W of NHWC; sums over the
token axis of [B, N, C]): the reduced axes are outer, the kept channel axis is innermost and
contiguous, so the reduction runs as vector adds over channels, channel blocks in parallel.

`single-row-reduction` (a lone sum / max over the last axis, e.g. a row's squared norm): one
parallel loop over rows, the row reduced in vector lanes (rfactor) then across them.
"""

from __future__ import annotations

from edgecc.schedules.common import (
    dividing_vector,
    iter_types,
    lane_partials,
    loop_extent,
    vectorize_innermost,
    vectorize_lanes,
)
from edgecc.schedules.conv import block_name, extents
from edgecc.schedules.parameters import schedule_parameters
from edgecc.schedules.rule import KernelView

POOL_BLOCKS = ("pool_max", "pool_sum", "pool_avg")


def _reduction_blocks(kernel: KernelView) -> list:
    return [b for b in kernel.blocks if "2" in iter_types(kernel.sch, b)]


def _epilogue_onto(kernel: KernelView, reduction, loop, vec: int) -> None:
    sch = kernel.sch
    after = kernel.blocks[kernel.blocks.index(reduction) + 1 :]
    for block in after[:-1]:
        sch.compute_inline(block)
    if after:
        sch.reverse_compute_at(after[-1], loop)
        vectorize_innermost(sch, after[-1], vec)


def _inline_before(kernel: KernelView, block) -> None:
    for before in kernel.blocks[: kernel.blocks.index(block)]:
        kernel.sch.compute_inline(before)


class Pool2dNHWCRule:
    name = "pool2d-nhwc"

    def _pool(self, kernel: KernelView):
        for block in kernel.blocks:
            if block_name(kernel, block) in POOL_BLOCKS and iter_types(kernel.sch, block) == ["0"] * 4 + ["2"] * 2:
                return block
        return None

    def matches(self, kernel: KernelView) -> bool:
        pool = self._pool(kernel)
        if pool is None:
            return False
        # NHWC: the channel axis (last) of output and input are the same index
        stmt = kernel.sch.get(pool)
        channel = stmt.iter_vars[3].var
        return any(region.region[-1].min.same_as(channel) for region in stmt.reads)

    def apply(self, kernel: KernelView) -> list:
        sch = kernel.sch
        pool = self._pool(kernel)
        _, _, out_w, channels, _, _ = extents(kernel, pool)
        vec = dividing_vector(channels, kernel.lanes)
        rows = next(r for r in schedule_parameters()["conv"]["window_row_tiles"] if out_w % r == 0)
        _inline_before(kernel, pool)
        n, h, w, c, kh, kw = sch.get_loops(pool)
        co, cv = sch.split(c, [None, vec])
        wo, wi = sch.split(w, [None, rows])
        sch.reorder(n, h, co, wo, kh, kw, wi, cv)
        _epilogue_onto(kernel, pool, wo, vec)
        for loop in (kh, kw, wi):
            sch.unroll(loop)
        sch.vectorize(cv)
        sch.parallel(sch.fuse(n, h, co))
        sch.decompose_reduction(pool, kh)
        return []


class ChannelVectorReductionRule:
    """One reduction block whose reduced axes are not the innermost input axis, which is kept."""

    name = "channel-vector-reduction"

    def _reduction(self, kernel: KernelView):
        reductions = _reduction_blocks(kernel)
        if len(reductions) != 1:
            return None
        block = reductions[0]
        types = iter_types(kernel.sch, block)
        spatial = [i for i, t in enumerate(types) if t == "0"]
        if not spatial or types != ["0"] * len(spatial) + ["2"] * (len(types) - len(spatial)):
            return None
        stmt = kernel.sch.get(block)
        innermost = stmt.iter_vars[spatial[-1]].var
        if len(stmt.reads) != 1 or not stmt.reads[0].region[-1].min.same_as(innermost):
            return None
        return block

    def matches(self, kernel: KernelView) -> bool:
        return self._reduction(kernel) is not None

    def apply(self, kernel: KernelView) -> list:
        sch = kernel.sch
        block = self._reduction(kernel)
        types = iter_types(kernel.sch, block)
        loops = sch.get_loops(block)
        spatial, reduce = loops[: types.count("0")], loops[types.count("0") :]
        channels = loop_extent(sch, spatial[-1])
        vec = dividing_vector(channels, kernel.lanes)
        _inline_before(kernel, block)
        co, cv = sch.split(spatial[-1], [None, vec])
        sch.reorder(*spatial[:-1], co, *reduce, cv)
        outer = sch.fuse(*spatial[:-1], co) if len(spatial) > 1 else co
        _epilogue_onto(kernel, block, outer, vec)
        sch.vectorize(cv)
        sch.parallel(outer)
        sch.decompose_reduction(block, reduce[0])
        return []


class SingleRowReductionRule:
    """One reduction over the last axis of rows, perhaps with elementwise stages after it (a mean's
    division) or before it (inlined)."""

    name = "single-row-reduction"

    def _reduction(self, kernel: KernelView):
        reductions = _reduction_blocks(kernel)
        if len(reductions) != 1:
            return None
        block = reductions[0]
        types = iter_types(kernel.sch, block)
        stmt = kernel.sch.get(block)
        if types.count("2") != 1 or types[-1] != "2" or len(stmt.reads) != 1:
            return None
        return block if stmt.reads[0].region[-1].min.same_as(stmt.iter_vars[-1].var) else None

    def matches(self, kernel: KernelView) -> bool:
        return self._reduction(kernel) is not None

    def apply(self, kernel: KernelView) -> list:
        sch = kernel.sch
        block = self._reduction(kernel)
        _inline_before(kernel, block)
        *rows, _ = sch.get_loops(block)
        row = sch.fuse(*rows) if len(rows) > 1 else rows[0]
        # one partial sum per lane, then across the lanes (before the epilogue moves: rfactor
        # needs the reduction's loop nest as it is)
        partial = lane_partials(sch, block, kernel.lanes)
        if partial is not None:
            # the partial sums of a row inside that row's parallel task: left where rfactor puts
            # them, they ran as one serial sweep over all rows before the parallel loop
            sch.compute_at(partial[0], row)
            vectorize_lanes(sch, *partial)
        _epilogue_onto(kernel, block, row, 1)
        sch.parallel(row)
        return []
