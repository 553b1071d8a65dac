"""Software prefetch for register-tiled kernels: the next weight panel (matmuls), and the output
tile a few tasks ahead (convolutions with a large output).

A matmul streams its packed weight one panel (K x tile) at a time. Each row tile reuses the panel
from cache, except the first, which reads it from DRAM whenever the weights do not stay cached
between inferences. DistilBERT's 66M weights do not, and neither does any model whose weights
outgrow the last-level cache. That first row tile needs tens of GB/s and runs at what one core's
hardware prefetcher brings in. A 128 x 3072 x 768 layer ran 1.95 ms with its weight in cache and
2.45 ms with eight such weights in turn (2-core AMX Xeon).

So the schedule splits K into blocks. At the start of each block, every row tile prefetches its
share of the next panel into L2: n row tiles each fetch 1/n of it. The DRAM traffic is then
spread over the whole panel's compute time. Measured: 2.45 -> 2.14 ms cold, with the same time hot.

TVM's schedule language has no prefetch primitive, so the rule marks the K-block loop with
PREFETCH_KEY and `insert_panel_prefetches` writes the prefetch loop into the scheduled function.
The prefetch is an `llvm.prefetch` call. It sits outside the innermost K loop, because LLVM
cannot keep the accumulators in registers across a call it cannot prove leaves them alone.
A convolution whose pixel tiles are outermost and whose output is large (4 MiB and up, cpu.toml)
writes lines that the rest of the inference has evicted, so every store waits for its line to be
read first. Each task (pixel tile x channel panel) therefore first prefetches, for writing, the
lines of the task's tile some pixel tiles ahead. MobileViT-S's 8 MB 128x128x128 output took
1.22 -> 0.95 ms and the model 0.97x. EfficientFormer-L1's 2.4 MB one, still in cache, ran 14%
slower with the prefetch, hence the size floor.
Tuning's default baseline (tuning/default_baseline.py) times the schedule's trace, which carries the
split and the mark but not the prefetch. That baseline is timed with its weight in cache, where the
prefetch changes nothing.
"""

from __future__ import annotations

import math

import tvm
from tvm import tirx
from tvm.tirx.stmt import For, ForKind, SeqStmt

PREFETCH_KEY = "edgecc.prefetch_next_panel"
OUTPUT_PREFETCH_KEY = "edgecc.prefetch_output_ahead"
CACHE_LINE_BYTES = 64
L2_LOCALITY = 2  # llvm.prefetch locality 2: x86 prefetcht1 (into L2), aarch64 PLDL2KEEP
L1_LOCALITY = 3
READ, WRITE = 0, 1  # llvm.prefetch rw: a write is prefetchw on x86, PSTL1KEEP on aarch64


def prefetch_annotation(weight_param: int, row_tiles: int, panels: int, panel_elements: int, blocks: int):
    """The mark on the loop whose iterations fetch the next panel: the weight parameter (packed to
    [panels, ...], `panel_elements` per panel), the row tiles that share a panel and the marked
    loop's extent (`blocks`); each iteration fetches 1 / (row_tiles x blocks) of the next panel."""
    return [weight_param, row_tiles, panels, panel_elements, blocks]


def output_prefetch_annotation(output_param: int, rows: int, tile: int, channels: int, ahead: int):
    """The mark on a convolution's parallel loop over (pixel tile, channel panel) tasks: the output
    parameter ([..., pixels, channels] in memory), R pixels x `tile` channels per task (channels /
    tile panels), and how many pixel tiles ahead to prefetch."""
    return [output_param, rows, tile, channels, ahead]


def insert_panel_prefetches(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """`func` with a prefetch loop at the top of every loop marked PREFETCH_KEY (module docstring)."""
    body = _visit(func, func.body, None)
    return func if body.same_as(func.body) else func.with_body(body)


def _visit(func, stmt, parallel_var):
    from tvm.s_tir import SBlock, SBlockRealize

    if isinstance(stmt, For):
        if stmt.kind == ForKind.PARALLEL:
            parallel_var = (stmt.loop_var, str(stmt.extent.ty))
        body = _visit(func, stmt.body, parallel_var)
        if OUTPUT_PREFETCH_KEY in stmt.annotations:
            tile = _output_prefetch_loop(func, stmt.annotations[OUTPUT_PREFETCH_KEY], parallel_var)
            body = SeqStmt([tile, body])
        if PREFETCH_KEY in stmt.annotations:
            body = SeqStmt([_prefetch_loop(func, stmt.annotations[PREFETCH_KEY], parallel_var, stmt.loop_var), body])
        if body.same_as(stmt.body):
            return stmt
        annotations = {k: v for k, v in stmt.annotations.items() if k not in (PREFETCH_KEY, OUTPUT_PREFETCH_KEY)}
        return For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding, annotations)
    if isinstance(stmt, SeqStmt):
        seq = [_visit(func, s, parallel_var) for s in stmt.seq]
        return stmt if all(a.same_as(b) for a, b in zip(seq, stmt.seq)) else SeqStmt(seq)
    if isinstance(stmt, SBlockRealize):
        block = _visit(func, stmt.block, parallel_var)
        return stmt if block.same_as(stmt.block) else SBlockRealize(stmt.iter_values, stmt.predicate, block)
    if isinstance(stmt, SBlock):
        body = _visit(func, stmt.body, parallel_var)
        if body.same_as(stmt.body):
            return stmt
        return SBlock(
            stmt.iter_vars,
            stmt.reads,
            stmt.writes,
            stmt.name_hint,
            body,
            stmt.init,
            stmt.alloc_buffers,
            stmt.match_buffers,
            stmt.annotations,
        )
    return stmt


def _prefetch_loop(func, annotation, parallel_var, block_var):
    """for line in range(L): prefetch(W[next panel, this row tile's share of this block])."""
    weight_param, row_tiles, panels, panel_elements, blocks = (int(v) for v in annotation)
    if parallel_var is None:
        raise ValueError(f"{PREFETCH_KEY}: the marked loop is not inside the kernel's parallel loop")
    parallel_var, index_type = parallel_var
    weight = func.params[weight_param]  # TVM 0.27: a buffer parameter is the buffer itself
    per_line = _elements_per_line(weight)
    share = panel_elements // row_tiles  # elements of the next panel each row tile fetches
    per_block = max(1, share // blocks)
    lines = max(1, -(-per_block // per_line))
    c = _constant(index_type)
    line = tirx.Var("prefetch_line", index_type)
    row_tile = tirx.floormod(parallel_var, c(row_tiles))
    panel = tirx.floormod(tirx.floordiv(parallel_var, c(row_tiles)), c(panels))
    offset = row_tile * c(share) + block_var * c(per_block) + line * c(per_line)
    offset = tirx.min(offset, c(panel_elements - 1))
    indices = [tirx.min(panel + c(1), c(panels - 1)), *_unflatten(offset, weight.shape[1:], c)]
    address = tirx.address_of(tirx.BufferLoad(weight, indices))
    call = tirx.call_llvm_intrin("void", "llvm.prefetch.p0", address, READ, L2_LOCALITY, 1)
    return For(line, c(0), c(lines), ForKind.SERIAL, tirx.Evaluate(call))


def _output_prefetch_loop(func, annotation, parallel_var):
    """for line in range(R x lines per tile row): prefetch for writing the output tile `ahead` pixel
    tiles on (the same channel panel) into L1."""
    output_param, rows, tile, channels, ahead = (int(v) for v in annotation)
    panels = channels // tile
    parallel_var, index_type = parallel_var
    output = func.params[output_param]
    per_line = _elements_per_line(output)
    lines_per_row = max(1, tile // per_line)
    total = math.prod(int(extent) for extent in output.shape)
    c = _constant(index_type)
    line = tirx.Var("prefetch_line", index_type)
    pixel = (tirx.floordiv(parallel_var, c(panels)) + c(ahead)) * c(rows) + tirx.floordiv(line, c(lines_per_row))
    offset = pixel * c(channels) + tirx.floormod(parallel_var, c(panels)) * c(tile)
    offset = tirx.min(offset + tirx.floormod(line, c(lines_per_row)) * c(per_line), c(total - 1))
    address = tirx.address_of(tirx.BufferLoad(output, _unflatten(offset, output.shape, c)))
    call = tirx.call_llvm_intrin("void", "llvm.prefetch.p0", address, WRITE, L1_LOCALITY, 1)
    return For(line, c(0), c(rows * lines_per_row), ForKind.SERIAL, tirx.Evaluate(call))


def _elements_per_line(buffer) -> int:
    return max(1, CACHE_LINE_BYTES // (tvm.DataType(str(buffer.dtype)).bits // 8))


def _constant(index_type: str):
    """An IntImm maker in the loops' index type (int64 after Relax legalization)."""
    return lambda value: tirx.const(value, index_type)


def _unflatten(offset, shape, c) -> list:
    """Row-major indices of the flat element `offset` in a buffer of `shape`."""
    indices = []
    for extent in reversed([int(d) for d in shape]):
        indices.insert(0, tirx.floormod(offset, c(extent)))
        offset = tirx.floordiv(offset, c(extent))
    return indices
