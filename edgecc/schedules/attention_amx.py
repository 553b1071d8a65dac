"""The fused attention's two products on AMX tiles, for `--precision bf16` / `int8` on CPUs with AMX-BF16.

QK^T and PV are the fused attention kernel's (edgecc.schedules.attention) matmuls. Here they run as
16-row blocks of `tdpbf16ps` (edgecc.schedules.matmul_amx's tensor intrinsic):

  scores   Q (rounded to bf16, scaled as before) x K^T, the K^T pack laid out as AMX B tiles
           [keys / 16, dim / 2, 16, 2]
  weights  exp(l - max) rounded to bf16 x V, the V pack laid out as [value_dim / 16, keys / 2, 16, 2]

Accumulation, the row max, exp, the row sum (from the unrounded exps) and the division stay FP32,
as OpenVINO's bf16 attention keeps them. The layouts are the kernel's own per-task packs, so nothing
changes outside it. A plan the tiles do not fit (head dim or keys not a multiple of 32, value dim
not of 16, gathered (sparse) operands) keeps the FP32 kernel.

With `--precision int8` on a CPU with AMX-INT8 the products can run in INT8 instead, whose cost
bench/int8_attention_accuracy.py measured (all-MiniLM-L6-v2: mean cosine 0.99893 -> 0.99884 with
the dense layers in INT8; the compiled kernel gives 0.99882). It is timed against the BF16 kernel
and kept only where faster (edgecc.passes.attention.time_attention_tiles); on the AMX Xeon it was
not (distilbert's plan 155 against 118 us: exp and softmax, not the products, dominate):

  scores   (tdpbssd) Q symmetric int8 per row x K symmetric int8 per key, the head dim zero-padded
           to 64
  weights  (tdpbusd) exp(l - max), in 0..1, as u8 in 1/255 steps x V symmetric int8 per value column

Scales are each kernel call's own (no calibration); the int32 sums are dequantized in FP32 before
the softmax and the division. Keys not a multiple of 64 keep the BF16 products.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecc.schedules.common import round_up
from edgecc.schedules.matmul_amx import CONFIGURE_IR, TILE_ROWS, bf16_bits, from_bf16_bits, register_tile_intrinsic
from edgecc.schedules.matmul_dot import TDPBF16PS, TDPBUSD, DotInstruction

if TYPE_CHECKING:
    from edgecc.passes.attention.pattern import AttentionPlan

TILES_ATTR = "edgecc.attention_tiles"  # on a fused attention kernel whose products run on the tiles: their precision
BF16, INT8 = "bf16", "int8"
# int8 x int8: Q's codes are signed, unlike the dense layers' u8 activations
TDPBSSD = DotInstruction("tdpbssd", "amx-int8", 16, "int8", (-127, 127), rows=16, k_tile=64)
PRODUCTS = {BF16: (TDPBF16PS, TDPBF16PS), INT8: (TDPBSSD, TDPBUSD)}  # scores', weighted sum's
CODES, STEPS = 127, 255  # symmetric int8 codes; u8 steps of the probabilities (0..1)


def fitting_precision(plan: AttentionPlan, precision: str) -> str | None:
    """The tile precision `plan`'s products run in when `precision` is asked: itself where the tiles fit
    it, BF16 for INT8 ones whose keys are no multiple of 64, else None (the FP32 kernel)."""
    gathered = any(chain.tables for chain in (plan.q, plan.kt, plan.v))
    bf16_step = TDPBF16PS.k_tile
    if gathered or plan.value_dim % TILE_ROWS or plan.seq % TILE_ROWS or plan.dim % bf16_step or plan.keys % bf16_step:
        return None
    if precision == INT8 and plan.keys % TDPBUSD.k_tile == 0:
        return INT8
    return BF16


def padded_depth(plan: AttentionPlan, precision: str) -> int:
    """The scores' k: the head dim, zero-padded to whole int8 tile rows for INT8."""
    step = PRODUCTS[precision][0].k_tile
    return round_up(plan.dim, step) if precision == INT8 else plan.dim


class Bf16Products:
    """The TE stages of the BF16 products (module docstring). `q_value(i)`, `kt_value(i)`, `v_value(i)`:
    the FP32 operand element at [.., row, column]."""

    def __init__(self, plan: AttentionPlan, q_value, kt_value, v_value):
        from tvm import te

        self.plan = plan

        def pack(value, rows: int, columns: int, name: str):
            def element(lead, row, column):
                return bf16_bits(value([*lead, row, column]))

            return b_tile_pack(plan, element, rows, columns, TDPBF16PS.group, name)

        self.kt_pack = pack(kt_value, plan.dim, plan.keys, "attn_kt_pack")
        self.v_pack = pack(v_value, plan.keys, plan.value_dim, "attn_v_pack")
        self.q_pack = te.compute(
            (*plan.batch, plan.seq, plan.dim), lambda *i: bf16_bits(q_value(list(i))), name="attn_q_pack"
        )

    def scores(self):
        from tvm import te

        d = te.reduce_axis((0, self.plan.dim), "d")
        return te.compute(
            (*self.plan.batch, self.plan.seq, self.plan.keys),
            lambda *i: te.sum(
                from_bf16_bits(self.q_pack[(*i[:-1], d)]) * _tiled_bf16(self.kt_pack, i[:-2], d, i[-1]), axis=d
            ),
            name="attn_scores",
        )

    def score_value(self, scores, i):
        return scores[i]

    def weighted(self, exps):
        from tvm import te

        plan = self.plan
        rounded = te.compute(exps.shape, lambda *i: bf16_bits(exps[i]), name="attn_exp_rounded")
        t = te.reduce_axis((0, plan.keys), "t3")
        return te.compute(
            (*plan.batch, plan.seq, plan.value_dim),
            lambda *i: te.sum(
                from_bf16_bits(rounded[(*i[:-1], t)]) * _tiled_bf16(self.v_pack, i[:-2], t, i[-1]), axis=t
            ),
            name="attn_weighted",
        )

    def weighted_value(self, weighted, i):
        return weighted[i]


def b_tile_pack(plan: AttentionPlan, element, rows: int, columns: int, group: int, name: str):
    """The [.., rows, columns] operand as AMX B tiles, [.., columns / 16, rows / group, 16, group];
    `element(lead, row, column)` gives its stored value."""
    from tvm import te

    def at(*i):
        *lead, tile, chunk, column, within = i
        return element(lead, chunk * group + within, tile * TILE_ROWS + column)

    return te.compute((*plan.batch, columns // TILE_ROWS, rows // group, TILE_ROWS, group), at, name=name)


def b_tile_element(packed, lead, row, column, group: int):
    """packed[.., row, column] of a `b_tile_pack`."""
    return packed[(*lead, column // TILE_ROWS, row // group, column % TILE_ROWS, row % group)]


def _tiled_bf16(packed, lead: tuple, row, column):
    """The float32 value of a bf16 `b_tile_pack`'s [.., row, column]."""
    return from_bf16_bits(b_tile_element(packed, lead, row, column, TDPBF16PS.group))


class Int8Products:
    """The TE stages of the INT8 products (module docstring). `q_value(i)`, `kt_value(i)`, `v_value(i)`:
    the FP32 operand element at [.., row, column]."""

    q_dtype, q_offset = "int8", 0  # how Q's codes are stored: code + offset

    def __init__(self, plan: AttentionPlan, q_value, kt_value, v_value):
        from tvm import te, tirx

        self.plan = plan
        batch, dim = plan.batch, plan.dim
        self.depth = depth = self.padded_depth(plan)

        def absmax(value, extent: int, shape, name: str, over_rows: bool):
            if over_rows:  # V's columns: a vector of columns per key, in memory order
                r = te.reduce_axis((0, extent), name + "_r")
                return te.compute(shape, lambda *i: te.max(tirx.abs(value([*i[:-1], r, i[-1]])), axis=r), name=name)
            # along a row: vector partial maxima, then their max
            lanes = TILE_ROWS if extent % TILE_ROWS == 0 else 1
            r = te.reduce_axis((0, extent // lanes), name + "_r")
            partial = te.compute(
                (*shape, lanes),
                lambda *i: te.max(tirx.abs(value([*i[:-1], r * lanes + i[-1]])), axis=r),
                name=name + "_partial",
            )
            lane = te.reduce_axis((0, lanes), name + "_lane")
            return te.compute(shape, lambda *i: te.max(partial[(*i, lane)], axis=lane), name=name)

        def inverse(scale, name: str):  # once per row / key / column, not a division per element
            return te.compute(
                scale.shape,
                lambda *i: tirx.const(float(CODES), "float32") / tirx.max(scale[i], tirx.const(1e-30, "float32")),
                name=name,
            )

        def code(value, inverse):
            return tirx.round(value * inverse)

        self.q_absmax = absmax(q_value, dim, (*batch, plan.seq), "attn_q_absmax", over_rows=False)
        # K^T's element [d, key]: along d it is a row of K
        self.k_absmax = absmax(
            lambda i: kt_value([*i[:-2], i[-1], i[-2]]), dim, (*batch, plan.keys), "attn_k_absmax", over_rows=False
        )
        self.v_absmax = absmax(v_value, plan.keys, (*batch, plan.value_dim), "attn_v_absmax", over_rows=True)
        q_inverse, k_inverse, v_inverse = (
            inverse(scale, f"attn_{name}_inverse")
            for scale, name in ((self.q_absmax, "q"), (self.k_absmax, "k"), (self.v_absmax, "v"))
        )

        def q_code(*i):
            *lead, row, d = i
            value = code(q_value([*lead, row, tirx.min(d, dim - 1)]), q_inverse[(*lead, row)])
            value = tirx.if_then_else(d < dim, value, tirx.const(0.0, "float32")) + float(self.q_offset)
            return tirx.Cast(self.q_dtype, tirx.Cast("int32", value))

        self.q_pack = te.compute((*batch, plan.seq, depth), q_code, name="attn_q_pack")

        def pack(value, scale, rows: int, padded_rows: int, columns: int, name: str):
            def element(lead, row, col):  # zero past `rows`: the padded head dim
                quantized = code(value([*lead, tirx.min(row, rows - 1), col]), scale[(*lead, col)])
                return tirx.Cast("int8", tirx.if_then_else(row < rows, quantized, tirx.const(0.0, "float32")))

            return b_tile_pack(plan, element, padded_rows, columns, TDPBUSD.group, name)

        self.kt_pack = pack(kt_value, k_inverse, dim, depth, plan.keys, "attn_kt_pack")
        self.v_pack = pack(v_value, v_inverse, plan.keys, plan.keys, plan.value_dim, "attn_v_pack")

    @staticmethod
    def padded_depth(plan: AttentionPlan) -> int:
        return padded_depth(plan, INT8)

    def scores(self):
        """Sum over the padded head dim of int8 Q x int8 K, int32."""
        from tvm import te, tirx

        d = te.reduce_axis((0, self.depth), "d")
        return te.compute(
            (*self.plan.batch, self.plan.seq, self.plan.keys),
            lambda *i: te.sum(
                tirx.Cast("int32", self.q_pack[(*i[:-1], d)])
                * tirx.Cast("int32", _tiled_code(self.kt_pack, i[:-2], d, i[-1])),
                axis=d,
            ),
            name="attn_scores",
        )

    def score_value(self, scores, i):
        """The FP32 dot product of Q's row and K's column behind scores[i]."""
        from tvm import tirx

        *lead, row, key = i
        scale = self.q_absmax[(*lead, row)] * self.k_absmax[(*lead, key)] * tirx.const(1.0 / CODES**2, "float32")
        return tirx.Cast("float32", self.code_product(scores, i)) * scale

    def code_product(self, scores, i):
        """The int32 dot product of Q's and K's codes behind scores[i]."""
        return scores[i]

    def weighted(self, exps):
        """The probabilities as u8 steps and the int32 sum of them x int8 V."""
        from tvm import te, tirx

        plan = self.plan

        def step(*i):
            value = tirx.round(tirx.min(exps[i], tirx.const(1.0, "float32")) * tirx.const(float(STEPS), "float32"))
            return tirx.Cast("uint8", tirx.Cast("int32", value))

        rounded = te.compute(exps.shape, step, name="attn_exp_rounded")
        t = te.reduce_axis((0, plan.keys), "t3")
        return te.compute(
            (*plan.batch, plan.seq, plan.value_dim),
            lambda *i: te.sum(
                tirx.Cast("int32", rounded[(*i[:-1], t)])
                * tirx.Cast("int32", _tiled_code(self.v_pack, i[:-2], t, i[-1])),
                axis=t,
            ),
            name="attn_weighted",
        )

    def weighted_value(self, weighted, i):
        """The FP32 sum of exp x V behind weighted[i]."""
        from tvm import tirx

        scale = self.v_absmax[(*i[:-2], i[-1])] * tirx.const(1.0 / (CODES * STEPS), "float32")
        return tirx.Cast("float32", weighted[i]) * scale


def _tiled_code(packed, lead, row, column):
    return b_tile_element(packed, lead, row, column, TDPBUSD.group)


def schedule_products(sch, plan: AttentionPlan, pack_at, precision: str = BF16) -> None:
    """Tensorize the scores and the weighted sum (both already computed at the row block); `pack_at`:
    the parallel task loop, which carries the tile-configuration IR."""
    block = sch.get_sblock
    sch.annotate(pack_at, "pragma_import_llvm", CONFIGURE_IR)
    depth = padded_depth(plan, precision)
    score_ins, weighted_ins = PRODUCTS[precision]
    for name, ins, columns, k in (
        ("attn_scores", score_ins, plan.keys, depth),
        ("attn_weighted", weighted_ins, plan.value_dim, plan.keys),
    ):
        product = block(name)
        rows_loop, column_loop, k_loop = sch.get_loops(product)[-3:]
        cols = 32 if columns % 32 == 0 else TILE_ROWS
        outer, inner = sch.split(column_loop, [None, cols])
        sch.reorder(outer, rows_loop, inner, k_loop)
        init = sch.decompose_reduction(product, rows_loop)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(rows_loop, register_tile_intrinsic(ins, TILE_ROWS, cols, k, bits=precision == BF16))
    if precision == INT8:
        schedule_int8_stages(sch)
    vectorize_rounded_exps(sch, TILE_ROWS)


def vectorize_rounded_exps(sch, lanes: int) -> None:
    """The probabilities' rounding to the products' input type, `lanes` at a time."""
    _, vector = sch.split(sch.get_loops(sch.get_sblock("attn_exp_rounded"))[-1], [None, lanes])
    sch.vectorize(vector)


def schedule_int8_stages(sch) -> None:
    """Vectorize the quantization: the scales' partial maxima and the packs, along memory order."""
    block = sch.get_sblock
    for name in ("attn_q_absmax_partial", "attn_k_absmax_partial"):
        partial = block(name)
        row, lane, r = sch.get_loops(partial)[-3:]
        sch.reorder(row, r, lane)
        sch.vectorize(lane)
        sch.decompose_reduction(partial, r)
    v_scale = block("attn_v_absmax")
    column, key = sch.get_loops(v_scale)[-2:]
    sch.reorder(key, column)
    sch.vectorize(column)
    sch.decompose_reduction(v_scale, key)
    _, q_lanes = sch.split(sch.get_loops(block("attn_q_pack"))[-1], [None, TILE_ROWS])
    sch.vectorize(q_lanes)
    tile, quad, column, within = sch.get_loops(block("attn_kt_pack"))[-4:]
    sch.reorder(tile, column, quad, within)  # K's rows are contiguous along the head dim
    sch.vectorize(within)
    tile, quad, column, within = sch.get_loops(block("attn_v_pack"))[-4:]
    sch.reorder(tile, quad, within, column)  # V's rows are contiguous along its columns
    sch.vectorize(column)
