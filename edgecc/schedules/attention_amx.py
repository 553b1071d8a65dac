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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecc.schedules.matmul_amx import CONFIGURE_IR, TILE_ROWS, bf16_bits, from_bf16_bits, register_tile_intrinsic
from edgecc.schedules.matmul_dot import TDPBF16PS

if TYPE_CHECKING:
    from edgecc.passes.attention.pattern import AttentionPlan

TILES_ATTR = "edgecc.attention_tiles"  # on a fused attention kernel whose products run on the tiles


def tiles_fit(plan: AttentionPlan) -> bool:
    """Whether both products of `plan` fit whole AMX tiles."""
    k_step = TDPBF16PS.k_tile
    gathered = any(chain.tables for chain in (plan.q, plan.kt, plan.v))
    return (
        not gathered
        and plan.dim % k_step == 0
        and plan.keys % k_step == 0
        and plan.value_dim % TILE_ROWS == 0
        and plan.seq % TILE_ROWS == 0
    )


def tile_packs(plan: AttentionPlan, kt_value, v_value):
    """The K^T and V packs as B tiles: [.., columns / 16, rows / 2, 16, 2] bf16 of the [.., rows,
    columns] operand (K^T: d x keys; V: keys x value dim). `kt_value` / `v_value`: element at [.., row, column]."""
    from tvm import te

    def pack(value, rows: int, columns: int, name: str):
        def element(*i):
            *lead, tile, pair, column, half = i
            return bf16_bits(value([*lead, pair * 2 + half, tile * TILE_ROWS + column]))

        return te.compute((*plan.batch, columns // TILE_ROWS, rows // 2, TILE_ROWS, 2), element, name=name)

    return (
        pack(kt_value, plan.dim, plan.keys, "attn_kt_pack"),
        pack(v_value, plan.keys, plan.value_dim, "attn_v_pack"),
    )


def tiled(packed, lead: tuple, row, column):
    """The float32 value of packed[.., row, column], a pack laid out as B tiles [.., column / 16,
    row / 2, column % 16, row % 2]."""
    return from_bf16_bits(packed[(*lead, column // TILE_ROWS, row // 2, column % TILE_ROWS, row % 2)])


def schedule_products(sch, plan: AttentionPlan, pack_at) -> None:
    """Tensorize the scores and the weighted sum (both already computed at the row block); `pack_at`:
    the parallel task loop, which carries the tile-configuration IR."""
    block = sch.get_sblock
    sch.annotate(pack_at, "pragma_import_llvm", CONFIGURE_IR)
    for name, columns, k in (("attn_scores", plan.keys, plan.dim), ("attn_weighted", plan.value_dim, plan.keys)):
        product = block(name)
        rows_loop, column_loop, k_loop = sch.get_loops(product)[-3:]
        cols = 32 if columns % 32 == 0 else TILE_ROWS
        outer, inner = sch.split(column_loop, [None, cols])
        sch.reorder(outer, rows_loop, inner, k_loop)
        init = sch.decompose_reduction(product, rows_loop)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(rows_loop, register_tile_intrinsic(TDPBF16PS, TILE_ROWS, cols, k, bits=True))
    exps = block("attn_exp_bf16")
    *_, lanes = sch.get_loops(exps)
    _, vector = sch.split(lanes, [None, TILE_ROWS])
    sch.vectorize(vector)
