"""NHWC convolutions (the layout edgecc/passes/convert_convs_to_nhwc.py gives them on CPUs).

`conv2d-nhwc-register-tile` (regular, pointwise 1x1 and grouped convolutions): an implicit GEMM,
rows = output pixels, columns = output channels, reduction over (kh, kw, cin). The output is
computed in register tiles of R pixels x V vectors of channels; each step of the reduction
broadcasts R input values and loads V weight vectors, so R x V fused multiply-adds need R + V
loads. The constant HWIO weight is repacked at compile time to [Cout / T, KH, KW, Cin, T] (T = V
vectors), the panel one column of tiles streams, as the matmul schedule does with its weights.
Tiles of channels are the outer parallel loop: a weight panel stays in cache while every pixel
tile passes it. Bias, activation and residual add run on the tile while it is in registers. A
padded input is copied once into its padded shape, rows in parallel: reading it through a bounds
check inside the reduction instead ran MobileViT-S's 3x3 convolutions 2.2x slower.

`depthwise-conv2d-nhwc`: each channel has its own KH x KW taps, so nothing is shared across
channels: vectorised over channels, a row of R output pixels per step, the taps unrolled, the
tap weights of a channel vector held in registers across the row. Padding is read through a
bounds check in the tap loop instead of a padded copy of the input (the kernel is memory bound;
the copy would double its traffic).
"""

from __future__ import annotations

import math

from tvm import DataType

from edgecc.schedules.common import dividing_vector, iter_types, loop_extent, vectorize_innermost
from edgecc.schedules.parameters import schedule_parameters, vector_registers
from edgecc.schedules.rule import KernelView
from edgecc.schedules.weight_packing import panel_layout

CONV_BLOCKS = ("conv2d_nhwc", "group_conv2d_nhwc")


def block_name(kernel: KernelView, block) -> str:
    return kernel.sch.get(block).name_hint


def extents(kernel: KernelView, block) -> list[int]:
    return [int(iv.dom.extent) for iv in kernel.sch.get(block).iter_vars]


def conv_block(kernel: KernelView):
    """The kernel's NHWC conv2d block (spatial n, h, w, c; reduction kh, kw, cin), or None."""
    for block in kernel.blocks:
        if block_name(kernel, block) in CONV_BLOCKS and iter_types(kernel.sch, block) == ["0"] * 4 + ["2"] * 3:
            return block
    return None


def _input_channels(kernel: KernelView, conv) -> int:
    """Channels of the (padded) input the conv reads."""
    return int(kernel.sch.get(conv).reads[0].source.shape[3])


def is_depthwise(kernel: KernelView, conv) -> bool:
    _, _, _, out_channels, _, _, per_group = extents(kernel, conv)
    return per_group == 1 and _input_channels(kernel, conv) == out_channels


def register_tile(rows: int, vectors: int, registers: int) -> tuple[int, int]:
    """(R pixels, V vectors) for the accumulator tile: R divides `rows`, V divides `vectors`, the R x V
    accumulators plus V weight vectors and one broadcast fit in `registers`; most FMAs per load."""
    params = schedule_parameters()["conv"]
    best, best_score = (1, 1), (-1.0, 0)
    for r in params["row_tiles"]:
        if rows % r:
            continue
        for v in range(1, min(vectors, params["max_vectors"]) + 1):
            if vectors % v or r * v + v + 1 > registers:
                continue
            score = (r * v / (r + v), r * v)  # FMAs per load, then accumulators
            if score > best_score:
                best, best_score = (r, v), score
    return best


def _pad_block(kernel: KernelView, conv):
    before = kernel.blocks[: kernel.blocks.index(conv)]
    pads = [b for b in before if block_name(kernel, b).startswith("pad_temp")]
    return pads[0] if pads else None


def _pads_nothing(kernel: KernelView, pad) -> bool:
    stmt = kernel.sch.get(pad)
    return [int(d) for d in stmt.writes[0].source.shape] == [int(d) for d in stmt.reads[0].source.shape]


def _inline_prologue(kernel: KernelView, conv, keep=None) -> None:
    for block in kernel.blocks[: kernel.blocks.index(conv)]:
        if keep is None or not kernel.sch.get(block).same_as(kernel.sch.get(keep)):
            kernel.sch.compute_inline(block)


def _epilogue_onto(kernel: KernelView, conv, loop, vec: int, conv_shape: list[int], fuse_pixels: bool) -> None:
    """Inline the elementwise epilogue into its last stage and compute that on each output tile.

    Only when the last stage writes the conv's own [n, h, w, c] shape: a tile of consecutive
    pixels of a reshaped or transposed output is not a box, and computing the box around it would
    read accumulators of tiles other threads own. Such an epilogue runs as its own parallel sweep."""
    from edgecc.schedules.elementwise import schedule_injective

    sch = kernel.sch
    epilogue = kernel.blocks[kernel.blocks.index(conv) + 1 :]
    for block in epilogue[:-1]:
        sch.compute_inline(block)
    if not epilogue:
        return
    last = epilogue[-1]
    written = [int(d) for d in sch.get(last).writes[0].source.shape]
    if written != conv_shape or iter_types(kernel.sch, last) != ["0"] * 4:
        schedule_injective(sch, last, vec)
        return
    if fuse_pixels:  # the tile is R consecutive pixels: iterate the epilogue over pixels too
        width = conv_shape[2]
        sch.transform_block_layout(last, lambda n, h, w, c: ((n * conv_shape[1] + h) * width + w, c))
    sch.reverse_compute_at(last, loop)
    vectorize_innermost(sch, last, vec)


def _pack_weight(kernel: KernelView, conv, tile: int) -> list:
    """Repack the constant HWIO weight to [Cout / tile, KH, KW, Cin, tile]; [[param, 3, tile]] or []."""
    sch = kernel.sch
    params = list(sch.mod["main"].params)
    stmt = sch.get(conv)
    for read_index, region in enumerate(stmt.reads):
        position = next((p for p, param in enumerate(params) if param.same_as(region.source)), None)
        if position is None or position not in kernel.constant_inputs or len(region.region) != 4:
            continue
        sch.transform_layout(conv, ("read", read_index), panel_layout(3, tile, ndim=4))
        return [[position, 3, tile]]
    return []


def _schedule_pad(kernel: KernelView, pad, vec: int) -> None:
    """A padded copy of the input: rows in parallel, channels vectorised."""
    sch = kernel.sch
    n, h, w, c = sch.get_loops(pad)
    sch.parallel(sch.fuse(n, h))
    if vec > 1 and loop_extent(sch, c) % vec == 0:
        _, lanes = sch.split(c, [None, vec])
        sch.vectorize(lanes)


def _pixels_outer(kernel: KernelView, conv, conv_shape: list[int]) -> bool:
    """Pixel tiles outermost (each core computes every channel of its own pixels) rather than
    weight panels outermost (each core computes its own channels of every pixel).

    With panels outermost, the next kernel, which splits the pixels between the cores, reads
    half of its input from the other core's cache. Pixels outermost avoids that, but each core
    then reads the whole weight again for every pixel tile, which pays off only for a small
    weight beside large activations. On the 2-core AMX Xeon, side by side: MobileViT-S 20.5 ->
    18.8 ms, EfficientFormer-L1 6.18 -> 5.75 ms; all convolutions pixels-outermost gained less, as
    kernels with large weights and small maps (the last stages) ran 10-40% slower that way."""
    params = schedule_parameters()["conv"]
    sch, stmt = kernel.sch, kernel.sch.get(conv)
    *_, kh, kw, ci = sch.get_loops(conv)  # before the reorder, the reduction loops come last
    weight = loop_extent(sch, kh) * loop_extent(sch, kw) * loop_extent(sch, ci) * conv_shape[3]
    source = stmt.reads[0].source  # the (padded) input
    activations = math.prod(int(d) for d in source.shape) + math.prod(conv_shape)
    element = DataType(str(source.dtype)).bits // 8
    return weight * element <= params["pixels_outer_max_weight_kib"] * 1024 and (
        weight * params["pixels_outer_activation_ratio"] <= activations
    )


def _mark_output_prefetch(kernel: KernelView, tasks, rows: int, tile: int, conv_shape: list[int]) -> None:
    """Mark the parallel loop (pixel tile x channel panel tasks) to prefetch, for writing, the output
    tile some tasks ahead when the output is large (cpu.toml, schedules/prefetch.py)."""
    from edgecc.schedules.prefetch import OUTPUT_PREFETCH_KEY, output_prefetch_annotation

    params = schedule_parameters()["conv"]
    sch = kernel.sch
    output_param = len(sch.mod["main"].params) - 1
    output = sch.mod["main"].params[output_param]
    elements = math.prod(int(d) for d in output.shape)
    if elements != math.prod(conv_shape):  # the epilogue reshaped or transposed: not [pixels, channels]
        return
    if elements * DataType(str(output.dtype)).bits // 8 < params["prefetch_output_min_kib"] * 1024:
        return
    annotation = output_prefetch_annotation(
        output_param, rows, tile, conv_shape[3], params["prefetch_output_tiles_ahead"]
    )
    sch.annotate(tasks, OUTPUT_PREFETCH_KEY, annotation)


class Conv2dNHWCRule:
    name = "conv2d-nhwc-register-tile"

    def matches(self, kernel: KernelView) -> bool:
        conv = conv_block(kernel)
        return conv is not None and not is_depthwise(kernel, conv)

    def apply(self, kernel: KernelView) -> list:
        sch = kernel.sch
        conv = conv_block(kernel)
        conv_shape = extents(kernel, conv)[:4]  # n, h, w, c: read before the pixel loop replaces h, w
        _, out_h, out_w, out_c = conv_shape
        in_vec = dividing_vector(_input_channels(kernel, conv), kernel.lanes)
        vec = dividing_vector(out_c, kernel.lanes)
        rows, vectors = register_tile(out_h * out_w, out_c // vec, vector_registers(kernel.target))
        tile = vec * vectors
        packed = _pack_weight(kernel, conv, tile)
        pad = _pad_block(kernel, conv)
        keep_pad = pad is not None and not _pads_nothing(kernel, pad)

        _inline_prologue(kernel, conv, keep=pad if keep_pad else None)
        # The accumulator as [n, pixel, c]: a tile of R consecutive pixels is then an interval even
        # where R does not divide the row, so the epilogue's region is exactly the tile.
        if kernel.blocks.index(conv) < len(kernel.blocks) - 1:  # an intermediate, not the output
            sch.transform_layout(conv, ("write", 0), lambda n, h, w, c: (n, h * out_w + w, c))
        # and the conv iterates over pixels (a fused loop alone still writes a box of rows)
        sch.transform_block_layout(conv, lambda n, h, w, c, kh, kw, ci: ((n * out_h + h) * out_w + w, c, kh, kw, ci))
        pixel, c, kh, kw, ci = sch.get_loops(conv)
        io, ii = sch.split(pixel, [None, rows])
        jo, ji = sch.split(c, [None, tile])
        jv, jl = sch.split(ji, [None, vec])
        pixels_outer = _pixels_outer(kernel, conv, conv_shape)
        if pixels_outer:
            sch.reorder(io, jo, kh, kw, ci, ii, jv, jl)
            outer_first, outer_second = io, jo
        else:
            sch.reorder(jo, io, kh, kw, ci, ii, jv, jl)
            outer_first, outer_second = jo, io
        _epilogue_onto(kernel, conv, outer_second, vec, conv_shape, fuse_pixels=True)
        sch.unroll(ii)
        sch.unroll(jv)
        sch.vectorize(jl)
        tasks = sch.fuse(outer_first, outer_second)
        sch.parallel(tasks)
        if pixels_outer:
            _mark_output_prefetch(kernel, tasks, rows, tile, conv_shape)
        sch.decompose_reduction(conv, kh)
        if keep_pad:
            _schedule_pad(kernel, pad, in_vec)
        return packed


class DepthwiseConv2dNHWCRule:
    name = "depthwise-conv2d-nhwc"

    def matches(self, kernel: KernelView) -> bool:
        conv = conv_block(kernel)
        return conv is not None and is_depthwise(kernel, conv)

    def apply(self, kernel: KernelView) -> list:
        sch = kernel.sch
        conv = conv_block(kernel)
        _, _, out_w, channels, _, _, _ = extents(kernel, conv)
        vec = dividing_vector(channels, kernel.lanes)
        rows = next(r for r in schedule_parameters()["conv"]["window_row_tiles"] if out_w % r == 0)
        _inline_prologue(kernel, conv)  # the pad too: a bounds check per tap, see the module docstring
        n, h, w, c, kh, kw, ci = sch.get_loops(conv)
        co, cv = sch.split(c, [None, vec])
        wo, wi = sch.split(w, [None, rows])
        # a tile of R pixels across all channel vectors, then the next: the R x taps input rows are
        # read once, in order (channel vectors outer re-read each row per vector: 1.3x slower here)
        sch.reorder(n, h, wo, co, kh, kw, ci, wi, cv)
        _epilogue_onto(kernel, conv, co, vec, extents(kernel, conv)[:4], fuse_pixels=False)
        for loop in (kh, kw, wi):
            sch.unroll(loop)
        sch.vectorize(cv)
        sch.parallel(sch.fuse(n, h))
        sch.decompose_reduction(conv, kh)
        return []
