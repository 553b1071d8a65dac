"""The fused attention's two products in INT8 on AVX-512 VNNI, for `--precision int8` on CPUs without AMX.

The stages are the AMX INT8 ones (edgecc.schedules.attention_amx: scales per call, Q per row, K per
key, V per value column; the probabilities as u8 steps), laid out for `vpdpbusd` instead of tiles:
K^T and V packed as [columns / 16, rows / 4, 16, 4], so one instruction reads 4 consecutive k of 16
columns as one vector, exactly as edgecc.schedules.matmul_dot packs a dense layer's weight. Each
product is a register tile of rows x 16-wide column vectors, its innermost 16 x 4 step one
instruction:

  scores   Q's codes + 128 (u8) x K's codes (s8); vpdpbusd multiplies unsigned by signed, so the
           +128 is taken back per key as 128 x the sum of that key's codes (`attn_k_sum`)
  weighted exp(l - max) as u8 in 1/255 steps x V's codes (s8), as on AMX

The head dim is padded to a multiple of 4 (zeros); keys and the value dim must be whole vectors.
As everywhere else, an INT8 attention is kept only where it times faster than its FP32 kernel on
this machine (edgecc.passes.attention.time_attention_tiles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecc.schedules import attention_amx as amx
from edgecc.schedules.common import loop_extent, round_up
from edgecc.schedules.matmul_dot import VPDPBUSD, register_intrinsic

if TYPE_CHECKING:
    from edgecc.passes.attention.pattern import AttentionPlan

INT8_VNNI = "int8-vnni"
Q_OFFSET = 128  # Q's codes stored unsigned, for vpdpbusd's u8 operand
# register tiles: rows x 16-wide vectors of int32 accumulators (16 of the 32 zmm registers)
TILE_ROWS, TILE_VECTORS = (4, 2, 1), (4, 2, 1)


def fits(plan: AttentionPlan) -> bool:
    """Whether `plan`'s products fit whole vpdpbusd steps (and no gather feeds them)."""
    lanes = VPDPBUSD.lanes
    gathered = any(chain.tables for chain in (plan.q, plan.kt, plan.v))
    return not gathered and plan.keys % lanes == 0 and plan.value_dim % lanes == 0


class VnniInt8Products(amx.Int8Products):
    """The AMX INT8 stages with Q stored + 128 and each key's code sum to take that back."""

    q_dtype, q_offset = "uint8", Q_OFFSET

    def __init__(self, plan: AttentionPlan, q_value, kt_value, v_value):
        from tvm import te, tirx

        super().__init__(plan, q_value, kt_value, v_value)
        d = te.reduce_axis((0, self.depth), "d_sum")
        self.k_sum = te.compute(
            (*plan.batch, plan.keys),
            lambda *i: te.sum(tirx.Cast("int32", amx._tiled_code(self.kt_pack, i[:-1], d, i[-1])), axis=d),
            name="attn_k_sum",
        )

    @staticmethod
    def padded_depth(plan: AttentionPlan) -> int:
        return round_up(plan.dim, VPDPBUSD.group)

    def code_product(self, scores, i):
        """Q's codes (unsigned, + 128) x K's, less the 128 x K's code sum the offset added."""
        *lead, _, key = i
        return scores[i] - self.k_sum[(*lead, key)] * Q_OFFSET


def schedule_products(sch, plan: AttentionPlan, pack_at, precision: str = INT8_VNNI) -> None:
    """Register-tile and tensorize the scores and the weighted sum (already computed at the row block)."""
    block = sch.get_sblock
    intrinsic = register_intrinsic(VPDPBUSD)
    lanes, group = VPDPBUSD.lanes, VPDPBUSD.group
    for name in ("attn_scores", "attn_weighted"):
        product = block(name)
        rows_loop, column_loop, k_loop = sch.get_loops(product)[-3:]
        rows = next(r for r in TILE_ROWS if (loop_extent(sch, rows_loop) % r) == 0)
        vectors = next(v for v in TILE_VECTORS if (loop_extent(sch, column_loop) // lanes) % v == 0)
        ro, ri = sch.split(rows_loop, [None, rows])
        co, cv, cl = sch.split(column_loop, [None, vectors, lanes])
        ko, kl = sch.split(k_loop, [None, group])
        sch.reorder(ro, co, ko, ri, cv, cl, kl)
        init = sch.decompose_reduction(product, ko)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(cl, intrinsic)
        sch.unroll(ri)
        sch.unroll(cv)
    amx.schedule_int8_stages(sch)
    k_sum = block("attn_k_sum")
    key, d = sch.get_loops(k_sum)[-2:]
    key_o, key_lanes = sch.split(key, [None, lanes])
    sch.reorder(key_o, d, key_lanes)
    sch.vectorize(key_lanes)
    sch.decompose_reduction(k_sum, d)
    amx.vectorize_rounded_exps(sch, lanes)
