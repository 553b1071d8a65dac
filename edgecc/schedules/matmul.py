"""Matmuls and their fused epilogues: a rows x vectors register tile over a weight panel.

The rule: the weight panel outermost with 8 x 3-vector register tiles (the accumulators), the
epilogue (bias, GELU, residual add) computed on the tile while it is hot, the outer tiles spread
over the cores. A constant weight is repacked at compile time into the [N/T, K, T] panels the tile
reads (see `weight_packing`).
"""

from __future__ import annotations

from edgecc.schedules.common import iter_types, largest_divisor, loop_extent, vectorize_innermost
from edgecc.schedules.parameters import schedule_parameters, vector_registers
from edgecc.schedules.rule import KernelView
from edgecc.schedules.weight_packing import panel_layout


def is_matmul_block(sch, block) -> bool:
    """TOPI names its matmul blocks; a lone trailing reduction over two inputs is the shape we tile."""
    types = iter_types(sch, block)
    stmt = sch.get(block)
    named = any(word in stmt.name_hint for word in ("matmul", "dense"))
    return named and types.count("2") == 1 and types[-1] == "2" and len(types) >= 3 and len(stmt.reads) == 2


class MatmulRule:
    name = "matmul"

    def matches(self, kernel: KernelView) -> bool:
        return any(is_matmul_block(kernel.sch, b) for b in kernel.blocks)

    def apply(self, kernel: KernelView) -> list:
        sch, blocks = kernel.sch, kernel.blocks
        block = next(b for b in blocks if is_matmul_block(sch, b))
        registers = vector_registers(kernel.target)
        return schedule_matmul(sch, block, blocks, kernel.lanes, kernel.constant_inputs, registers)


def schedule_matmul(sch, block, blocks, lanes: int, constant_inputs=frozenset(), registers: int = 32) -> list:
    """Register-tile the matmul; returns [[param, n_axis, tile]] for a weight repacked to panels.
    The tile's rows x vectors accumulators, its vectors of weights and one broadcast stay within the
    target's `registers`: 8 x 4 (37 of AVX-512's 32) spilled, 268-278 GFLOP/s against 4 x 5's
    332-340 on a 320-wide layer of an AMX Xeon."""
    params = schedule_parameters()["matmul"]
    index = blocks.index(block)
    epilogue = blocks[index + 1 :]
    *_, j_loop, _ = sch.get_loops(block)
    n = loop_extent(sch, j_loop)
    vec = largest_divisor(n, [lanes, lanes // 2, 4, 2]) if lanes > 1 else 1
    tile = vec * largest_divisor(n // vec, params["vectors_per_tile"])
    vectors = tile // vec
    fitting = [r for r in params["row_tiles"] if r * vectors + vectors + 1 <= registers] or [1]
    *spatial, i, _, _ = sch.get_loops(block)
    rows = _row_tile(loop_extent(sch, i), fitting)
    # before the weight is repacked: pad_einsum takes only plain einsum reads
    row_copies, last = _pad_rows(sch, block, len(spatial), loop_extent(sch, i), rows), None
    if row_copies is not None:
        copy_out = sch.get_consumers(block)[0]
        if epilogue:  # the epilogue reads the padded result directly, and writes the real rows
            sch.compute_inline(copy_out)
        else:
            last = copy_out
    packed = _pack_constant_weight(sch, block, tile, constant_inputs)
    # Elementwise epilogue (bias, GELU, scaling): inline all but the last into it.
    for inner in epilogue[:-1]:
        sch.compute_inline(inner)
    for prologue in blocks[:index]:
        sch.compute_inline(prologue)
    *spatial, i, j, k = sch.get_loops(block)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, tile])
    ji_o, ji_i = sch.split(ji, [None, vec])
    # Column tiles outermost: one panel of the weight (K x tile) stays in cache while every row
    # tile streams past it; rows outermost re-read the whole weight per row tile (2x slower at
    # 384x1536 here).
    sch.reorder(*spatial, jo, io, k, ii, ji_o, ji_i)
    k = _mark_panel_prefetch(sch, k, packed, loop_extent(sch, io), loop_extent(sch, jo), tile, params)
    for copy in row_copies or ():  # the tile's rows of the input, copied (zeros past the end) per tile
        sch.compute_at(copy, io)
        vectorize_innermost(sch, copy, vec)
    last = epilogue[-1] if epilogue else last
    if last is not None:
        sch.reverse_compute_at(last, io)
        vectorize_innermost(sch, last, vec)
    sch.unroll(ii)
    sch.unroll(ji_o)
    sch.vectorize(ji_i)
    sch.parallel(sch.fuse(*spatial, jo, io))
    # Last: the init/update split makes the update block neither complete nor reduction, which
    # parallel and vectorize refuse to touch.
    sch.decompose_reduction(block, k)
    return packed


def _pad_rows(sch, block, lead: int, extent: int, rows: int):
    """Rows that are no whole number of tiles: the matmul runs on rows padded to whole tiles
    (pad_einsum), each tile copying its rows of the input first, so no predicate sits in the tile's
    inner loop (with one, 197x192x192 ran 0.184 ms against 0.080 padded, 0.069 for 196 rows); the
    padded input's copy blocks, or None where the rows need no padding or cannot be padded."""
    if extent % rows == 0:
        return None
    from tvm.s_tir.schedule import ScheduleError

    before = {sch.get(b).name_hint for b in sch.get_producers(block)}
    try:
        sch.pad_einsum(block, [1] * lead + [rows, 1, 1])
    except ScheduleError:  # no plain einsum: the last tile is predicated instead
        return None
    return [b for b in sch.get_producers(block) if sch.get(b).name_hint not in before]


def _row_tile(extent: int, fitting: list) -> int:
    """The largest fitting row tile that divides the rows; where only a tile under half the largest
    does (ViT's 197 or 577 tokens, prime), the largest, its last tile cut short by a predicate: tiles
    of one row had loaded every weight vector for one product (197 rows ran 6x slower than 196)."""
    rows = largest_divisor(extent, fitting)
    widest = max(fitting)
    return widest if 2 * rows <= widest < extent else rows


def _mark_panel_prefetch(sch, k, packed: list, row_tiles: int, panels: int, tile: int, params: dict):
    """Split K into blocks whose loop prefetches the next weight panel (schedules/prefetch.py); the
    K-block loop, or `k` unchanged where there is no packed weight, one panel, or no such block."""
    from edgecc.schedules.prefetch import PREFETCH_KEY, prefetch_annotation

    reduction = loop_extent(sch, k)
    k_block = params["prefetch_k_block"]
    if not packed or panels < 2 or k_block <= 0 or reduction <= k_block or reduction % k_block:
        return k
    k_blocks, _ = sch.split(k, [None, k_block])
    weight_param = packed[0][0]
    sch.annotate(
        k_blocks,
        PREFETCH_KEY,
        prefetch_annotation(weight_param, row_tiles, panels, reduction * tile, reduction // k_block),
    )
    return k_blocks


def _pack_constant_weight(sch, block, tile: int, constant_inputs) -> list:
    """Rewrite the block's 2-D weight parameter to panels [N / tile, K, tile] when every call
    passes a constant for it; [[param, n_axis, tile]] or [] when nothing was packed."""
    params = list(sch.mod["main"].params)  # TVM 0.27: a buffer parameter is the buffer itself
    stmt = sch.get(block)
    j_var, k_var = stmt.iter_vars[-2].var, stmt.iter_vars[-1].var
    for read_index, region in enumerate(stmt.reads):
        position = next((p for p, param in enumerate(params) if param.same_as(region.source)), None)
        if position is None or position not in constant_inputs or len(region.region) != 2:
            continue
        indices = [r.min for r in region.region]
        if indices[1].same_as(j_var) and indices[0].same_as(k_var):
            n_axis = 1
        elif indices[0].same_as(j_var) and indices[1].same_as(k_var):
            n_axis = 0
        else:
            continue
        sch.transform_layout(block, ("read", read_index), panel_layout(n_axis, tile))
        return [[position, n_axis, tile]]
    return []
