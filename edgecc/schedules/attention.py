"""The fused attention kernel: TE stages and their CPU schedule, built for one `AttentionPlan`.

The loop nest is not a plain matmul the generic rules know, so the kernel is built pre-scheduled:
one parallel task per (batch, head), in which K^T and V are packed once (V padded to whole
vectors) -- when there are few heads, the packs run first as their own parallel loop over heads and
the tasks are (batch, head, block of 16 query rows), which no longer pack K^T and V again each
(DeiT's 3 heads at 197 tokens: 0.40 -> 0.27 ms, 577 tokens x 6 heads 5.3 -> 3.8 ms); then per row block the
scores (2 rows x 4 key vectors in registers), the row max and sum (vector partials), exp and the
weighted sum of V (~12 accumulators) run while the block's rows sit in L1. Numerically it is
softmax(QK^T) V computed as (exp(l - max) V) / sum(exp(l - max)), within ~1e-6 of the unfused
graph; with fast math exp is TVM's fast_exp, the polynomial FastMathTransform gives softmax.
TinyBERT-4 seq 128 on the 2-core AVX-512 host: attention 3.05 -> 0.83 ms (4 layers), 13.0 -> 10.4 ms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvm import te, tirx, topi

from edgecc.passes._layout_chains import static_shape
from edgecc.schedules import attention_amx as amx
from edgecc.schedules import attention_vnni as vnni
from edgecc.schedules.common import (
    FAILURES_ATTR,
    OPAQUE_PATTERN,
    loop_extent,
    mark_scheduled,
    round_up,
    schedule_failed,
    schedule_source,
)

if TYPE_CHECKING:
    from edgecc.passes.attention.pattern import AttentionPlan

ROW_BLOCK = 16  # query rows per parallel task
# Register tiles: the scores' rows x vectors of keys (up to SCORE_VECTORS) and the weighted sum's
# rows x value vectors, within these shares of the target's vector registers (16 with AVX2: 8 and
# 12 accumulators; 32 with AVX-512 and NEON: 16 and 24). Key counts that are an odd number of
# vectors (sparse attention's 13 x 16 slots) get more rows instead: 8 x 1 ran that kernel 7.2 ->
# 6.1 ms at MiniLM seq 1024, where 2 x 1 left it load-bound. On the AMX Xeon, AVX-512's 16 and 24
# accumulators ran MobileViT-S's attention (36-wide heads) 2.97 -> 2.49 ms and sparse MiniLM-L6's
# at seq 512 10.6 -> 9.8 ms; the fixed 8 and 12 had left half of AVX-512's registers unused.
SCORE_SHARE, WEIGHTED_SHARE, SCORE_VECTORS = 1 / 2, 3 / 4, 4
LANES = 8  # float32 lanes the inner loops are split by, unless the caller passes the target's
REGISTERS = 16  # vector registers, unless the caller passes the target's
MIN_PARALLEL_HEADS = 8  # fewer (batch x heads) than this: row blocks become parallel tasks too
# how QK^T and PV can run besides FP32: their TE stages and their schedule
PRODUCTS = {  # (stages, the module whose schedule_products schedules them)
    amx.BF16: (amx.Bf16Products, amx),
    amx.INT8: (amx.Int8Products, amx),
    vnni.INT8_VNNI: (vnni.VnniInt8Products, vnni),
}
INT8_PRODUCTS = (amx.INT8, vnni.INT8_VNNI)


def attention_te(
    q_src,
    kt_src,
    v_src,
    bias,
    plan: AttentionPlan,
    fast_math: bool = True,
    lanes: int = LANES,
    tables: dict | None = None,
    tiles: str | None = None,
):
    """TE stages of the fused attention; the last one is the output. `tables`: for "q", "kt" and
    "v", TE tensors standing for the index constants of that chain's `take` steps. `tiles`: the
    products' precision and instructions, a key of PRODUCTS: "bf16" or "int8" on AMX tiles
    (edgecc.schedules.attention_amx), "int8-vnni" on vpdpbusd (edgecc.schedules.attention_vnni)."""
    tables = tables or {}
    q_value, kt_value, v_value = (
        (lambda src, i, chain=chain, name=name: chain.value(src, i, tables.get(name, ())))
        for name, chain in (("q", plan.q), ("kt", plan.kt), ("v", plan.v))
    )
    rank = len(plan.batch) + 2
    batch, dim, value_dim = plan.batch, plan.dim, plan.value_dim
    # keys padded to whole vectors (ViT's 197): the padding keys' logits are -inf and their exps 0,
    # so they weigh nothing, and every key loop runs on whole vectors
    keys = _computed_keys(plan, lanes, tiles)
    padded_keys = keys != plan.keys
    last_key = plan.keys - 1
    # the query rows computed: odd lengths (ViT's 197, 577) padded to whole row blocks, the padding
    # rows copies of the last one (finite, never read back); only the output is cut to plan.seq
    seq = _computed_rows(plan, tiles)
    last_row = plan.seq - 1
    # V padded to whole vectors; when that leaves room, a column of ones after V makes the weighted
    # sum also give the softmax denominator, otherwise that is summed on its own
    ones_column = _ones_column(plan, lanes, tiles)
    padded = round_up(value_dim + 1, lanes) if ones_column else value_dim

    tiled = None
    if tiles:  # the products' own stages, packs and Q included
        operands = (lambda i: q_value(q_src, i), lambda i: kt_value(kt_src, i), lambda i: v_value(v_src, i))
        tiled = PRODUCTS[tiles][0](plan, *operands)
    else:
        kt_packed = te.compute(
            (*batch, dim, keys),
            lambda *i: kt_value(kt_src, [*i[:-1], _clamped(i[-1], last_key, padded_keys)]),
            name="attn_kt_pack",
        )

        def real_key(t, value):  # a padding key's value row is 0, ones column included
            return tirx.if_then_else(t < plan.keys, value, tirx.const(0.0, "float32")) if padded_keys else value

        def v_at(i, e):
            return v_value(v_src, [*i[:-2], _clamped(i[-2], last_key, padded_keys), e])

        if ones_column:
            v_packed = te.compute(
                (*batch, keys, padded),
                lambda *i: real_key(
                    i[-2],
                    tirx.if_then_else(
                        i[-1] < value_dim,
                        v_at(i, tirx.min(i[-1], value_dim - 1)),
                        tirx.if_then_else(i[-1] == value_dim, tirx.const(1.0, "float32"), tirx.const(0.0, "float32")),
                    ),
                ),
                name="attn_v_pack",
            )
        else:
            v_packed = te.compute(
                (*batch, keys, value_dim), lambda *i: real_key(i[-2], v_at(i, i[-1])), name="attn_v_pack"
            )
        # Q copied per row block with its scaling applied, so the scores' inner loop broadcasts a
        # plain load instead of loading, scaling and broadcasting every element
        q_packed = te.compute(
            (*batch, seq, dim),
            lambda *i: q_value(q_src, [*i[:-2], _clamped(i[-2], last_row, seq != plan.seq), i[-1]]),
            name="attn_q_pack",
        )
    if tiled is not None:
        scores = tiled.scores()
    else:
        d = te.reduce_axis((0, dim), "d")
        scores = te.compute(
            (*batch, seq, keys),
            lambda *i: te.sum(q_packed[(*i[:-1], d)] * kt_packed[(*i[:-2], d, i[-1])], axis=d),
            name="attn_scores",
        )

    def bias_at(i):
        dims = static_shape(plan.bias)
        i = (*i[:-2], _clamped(i[-2], last_row, seq != plan.seq), _clamped(i[-1], last_key, padded_keys))
        lead = list(i[len(i) - len(dims) :])
        return bias[tuple(0 if n == 1 else idx for n, idx in zip(dims, lead))]

    def logit(*i):
        value = tiled.score_value(scores, i) if tiled is not None else scores[i]
        for step in plan.logit_steps:
            if step[0] == "bias":
                value = value + bias_at(i)
            elif step[0] == "multiply":
                value = value * tirx.const(step[1], "float32")
            else:
                value = value / tirx.const(step[1], "float32")
        if padded_keys:
            value = tirx.if_then_else(i[-1] < plan.keys, value, tirx.const(float("-inf"), "float32"))
        return value

    logits = te.compute(scores.shape, logit, name="attn_logits")
    # max from -inf (te.max starts at the lowest finite float), so a row whose keys are all masked
    # with -inf is recognisable: its exps are made NaN, as softmax makes them, and the where wrapper
    # (nan_to_zero) then gives 0 like the unfused graph
    row_maximum = te.comm_reducer(
        lambda a, b: tirx.max(a, b), lambda t: tirx.const(float("-inf"), t), name="max_from_neg_inf"
    )
    if keys % lanes == 0:  # lanes partial maxima per row (a vector), then their max
        to = te.reduce_axis((0, keys // lanes), "to")
        partial = te.compute(
            (*batch, seq, lanes),
            lambda *i: row_maximum(logits[(*i[:-1], to * lanes + i[-1])], axis=to),
            name="attn_max_partial",
        )
        lane = te.reduce_axis((0, lanes), "lane")
        row_max = te.compute((*batch, seq), lambda *i: row_maximum(partial[(*i, lane)], axis=lane), name="attn_max")
    else:
        t = te.reduce_axis((0, keys), "t")
        row_max = te.compute((*batch, seq), lambda *i: row_maximum(logits[(*i, t)], axis=t), name="attn_max")
    shifted = te.compute(scores.shape, lambda *i: logits[i] - row_max[i[:-1]], name="attn_shifted")
    if fast_math:  # the same polynomial the pipeline's FastMathTransform gives softmax
        raw_exps = topi.fast_exp(shifted)
    else:
        raw_exps = te.compute(scores.shape, lambda *i: te.exp(shifted[i]), name="T_exp")
    exps = te.compute(
        scores.shape,
        lambda *i: tirx.if_then_else(
            row_max[i[:-1]] == tirx.const(float("-inf"), "float32"),
            tirx.const(float("nan"), "float32"),
            tirx.if_then_else(i[-1] < plan.keys, raw_exps[i], tirx.const(0.0, "float32"))
            if padded_keys
            else raw_exps[i],
        ),
        name="attn_exp",
    )
    if tiled is not None:
        weighted = tiled.weighted(exps)
    else:
        t3 = te.reduce_axis((0, keys), "t3")
        weighted = te.compute(
            (*batch, seq, padded),
            lambda *i: te.sum(exps[(*i[:-1], t3)] * v_packed[(*i[:-2], t3, i[-1])], axis=t3),
            name="attn_weighted",
        )

    if ones_column:
        # its own stage: a block reading weighted[.., e] and weighted[.., value_dim] defeats region analysis
        row_total = te.compute((*batch, seq), lambda *i: weighted[(*i, value_dim)], name="attn_total")
    elif keys % lanes == 0:  # vector partial sums, then their sum
        to2 = te.reduce_axis((0, keys // lanes), "to2")
        partial_sum = te.compute(
            (*batch, seq, lanes),
            lambda *i: te.sum(exps[(*i[:-1], to2 * lanes + i[-1])], axis=to2),
            name="attn_sum_partial",
        )
        lane2 = te.reduce_axis((0, lanes), "lane2")
        row_total = te.compute(
            (*batch, seq), lambda *i: te.sum(partial_sum[(*i, lane2)], axis=lane2), name="attn_total"
        )
    else:
        t2 = te.reduce_axis((0, keys), "t2")
        row_total = te.compute((*batch, seq), lambda *i: te.sum(exps[(*i, t2)], axis=t2), name="attn_total")

    def result(i):
        total = row_total[i[:-1]]
        value = (tiled.weighted_value(weighted, i) if tiled is not None else weighted[i]) / total
        if plan.nan_to_zero:
            value = tirx.if_then_else(tirx.isnan(total), tirx.const(0.0, "float32"), value)
        return value

    axes = plan.out_axes or list(range(rank))
    out_shape = [([*batch, plan.seq, value_dim])[a] for a in axes]

    def output(*o):
        i = [None] * rank
        for out_axis, in_axis in enumerate(axes):
            i[in_axis] = o[out_axis]
        return result(tuple(i))

    return te.compute(out_shape, output, name="attn_out")


def _schedule(func, plan: AttentionPlan, lanes: int = LANES, tiles: str | None = None, registers: int = REGISTERS):
    """Parallel over (batch, head) [and row blocks when there are few heads]; each row block's scores,
    softmax and weighted sum computed while its rows are in cache, K^T and V packed once per task."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    rows = next(r for r in (ROW_BLOCK, 8, 4, 2, 1) if _computed_rows(plan, tiles) % r == 0)
    block = sch.get_sblock
    ones_column = _ones_column(plan, lanes, tiles)
    if ones_column:  # the weighted sum anchors the loops: [lead.., row, value, key]
        *lead, i, e, t = sch.get_loops(block("attn_weighted"))
        io, ii = sch.split(i, [None, rows])
        sch.reorder(*lead, io, ii, t, e)
    else:  # the output does, in its logical [lead.., row, value] order
        out_loops = sch.get_loops(block("attn_out"))
        logical = [None] * (len(plan.batch) + 2)
        for out_axis, in_axis in enumerate(plan.out_axes or range(len(logical))):
            logical[in_axis] = out_loops[out_axis]
        *lead, i, e = logical
        io, ii = sch.split(i, [None, rows])
        sch.reorder(*lead, io, ii, e)
    outer = sch.fuse(*lead) if len(lead) > 1 else lead[0]
    heads = 1
    for n in plan.batch:
        heads *= n
    if heads >= MIN_PARALLEL_HEADS:
        pack_at, rows_at = outer, io
    else:
        pack_at = rows_at = sch.fuse(outer, io)
    exp_name = next(b for b in ("T_fast_exp", "T_exp") if _has_block(sch, b))
    sch.compute_inline(block("attn_shifted"))
    sch.compute_inline(block(exp_name))
    exp_name = "attn_exp"
    sch.compute_inline(block("attn_logits"))
    keys = _computed_keys(plan, lanes, tiles)
    vector_keys = keys % lanes == 0
    if ones_column:
        sch.reverse_compute_at(block("attn_total"), rows_at)
        sch.reverse_compute_at(block("attn_out"), rows_at)
        stages = [exp_name]
    else:
        rounded = ["attn_exp_rounded"] if tiles else []
        stages = ["attn_weighted", "attn_total", *(["attn_sum_partial"] if vector_keys else []), *rounded, exp_name]
    int8 = tiles in INT8_PRODUCTS
    row_stages = (*stages, "attn_max", *(["attn_max_partial"] if vector_keys else []), "attn_scores", "attn_q_pack")
    # the scales after the packs that read them; on VNNI each row's (key's) partial maxima run in its
    # parallel task too: moved there, the AMX kernel fails to build (a tile access to a merged float32
    # buffer), so there they stay one serial sweep
    vnni_int8 = tiles == vnni.INT8_VNNI
    q_scale = ["attn_q_inverse", "attn_q_absmax", *(["attn_q_absmax_partial"] if vnni_int8 else [])]
    for name in (*row_stages, *(q_scale if int8 else [])):
        sch.compute_at(block(name), rows_at)
    scales = ["attn_v_inverse", "attn_v_absmax", "attn_k_inverse", "attn_k_absmax"]
    scales = [*scales, *(["attn_k_absmax_partial"] if vnni_int8 else [])] if int8 else []
    k_sums = ["attn_k_sum"] if vnni_int8 else []  # before the K^T pack it reads
    packs_alone = heads < MIN_PARALLEL_HEADS and not tiles
    for name in (*k_sums, "attn_v_pack", "attn_kt_pack", *scales):
        if packs_alone:
            pack_loops = sch.get_loops(block(name))
            sch.parallel(sch.fuse(*pack_loops[: len(plan.batch)]) if len(plan.batch) > 1 else pack_loops[0])
        else:
            sch.compute_at(block(name), pack_at)
    if not ones_column and not tiles and plan.value_dim % lanes == 0:
        # each key's value row is contiguous, whether or not a gather picked the key
        _, v_lane = sch.split(sch.get_loops(block("attn_v_pack"))[-1], [None, lanes])
        sch.vectorize(v_lane)
    if plan.seq <= ROW_BLOCK and not tiles:
        # few query rows (sparse attention's global ones): the K^T pack is most of the work, so it
        # walks K along its rows instead of gathering one element per row
        sch.reorder(*reversed(sch.get_loops(block("attn_kt_pack"))[-2:]))
    sch.parallel(pack_at)
    for name in ("attn_max_partial", "attn_sum_partial"):
        if vector_keys and _has_block(sch, name):
            partial = block(name)
            if keys == lanes:  # one key vector (MobileViT's 16-key blocks): no reduction loop is left
                sch.vectorize(sch.get_loops(partial)[-1])
                continue
            p_i, p_lane, p_to = sch.get_loops(partial)[-3:]
            sch.reorder(p_i, p_to, p_lane)
            sch.vectorize(p_lane)
            sch.decompose_reduction(partial, p_to)
    if tiles:
        PRODUCTS[tiles][1].schedule_products(sch, plan, pack_at, tiles)
    else:
        _schedule_products(sch, plan, rows, lanes, ones_column, registers, keys)
    exps = block(exp_name)
    if vector_keys:
        _, lane_loop = sch.split(sch.get_loops(exps)[-1], [None, lanes])
        sch.vectorize(lane_loop)
    axes = plan.out_axes or list(range(len(plan.batch) + 2))
    out_last = sch.get_loops(block("attn_out"))[-1]
    if axes[-1] == len(axes) - 1 and (loop_extent(sch, out_last) or 1) % lanes == 0:  # value axis innermost
        _, out_lane = sch.split(out_last, [None, lanes])
        sch.vectorize(out_lane)
    return sch.mod["main"].without_attr("global_symbol")


def _schedule_products(
    sch, plan: AttentionPlan, rows: int, lanes: int, ones_column: bool, registers: int, keys: int
) -> None:
    block = sch.get_sblock
    vector_keys = keys % lanes == 0
    # scores: per row, groups of key vectors accumulate in registers over the head dim
    scores = block("attn_scores")
    s_i, s_t, s_d = sch.get_loops(scores)[-3:]
    if vector_keys:
        group = next(g for g in (SCORE_VECTORS, 2, 1) if (keys // lanes) % g == 0)
        pair = next(r for r in (int(registers * SCORE_SHARE) // group, 4, 2, 1) if rows % r == 0)
        s_io, s_ii = sch.split(s_i, [None, pair])
        s_to, s_tg, s_tv = sch.split(s_t, [None, group, lanes])
        sch.reorder(s_io, s_to, s_d, s_ii, s_tg, s_tv)
        sch.unroll(s_ii)
        sch.unroll(s_tg)
        sch.vectorize(s_tv)
    sch.decompose_reduction(scores, s_d)
    # weighted sum (and softmax sum, the ones column): 2 rows x padded value vectors in registers
    weighted = block("attn_weighted")
    if ones_column:
        w_i, w_t, w_e = sch.get_loops(weighted)[-3:]
    else:
        w_i, w_e, w_t = sch.get_loops(weighted)[-3:]
    vectors = -(-plan.value_dim // lanes) if not ones_column else -(-(plan.value_dim + 1) // lanes)
    pair = next(r for r in (max(1, int(registers * WEIGHTED_SHARE) // vectors), 4, 2, 1) if rows % r == 0)
    w_io, w_ii = sch.split(w_i, [None, pair])
    w_eo, w_ev = sch.split(w_e, [None, lanes])
    sch.reorder(w_io, w_t, w_ii, w_eo, w_ev)
    sch.unroll(w_ii)
    sch.unroll(w_eo)
    sch.vectorize(w_ev)
    sch.decompose_reduction(weighted, w_t)


def _computed_rows(plan: AttentionPlan, tiles: str | None = None) -> int:
    """Query rows the FP32 kernel computes: a length with no row block of 4 or more (an odd one) is
    padded to whole row blocks, of 16 where that adds at most an eighth of the rows (197 -> 208,
    577 -> 592), else of 8 (50 -> 56). With blocks of 1 the register tiles shrank to one row, and
    the output-anchored loops of a 1-row block broke the schedule ("loops are not in a chain"),
    which had sent every odd-length attention (DeiT's 197 tokens) to the naive kernel. Blocks of 16
    rather than 8 ran 197 x 3 heads of 64 0.52 -> 0.40 ms and 577 x 6 heads 8.3 -> 5.8 ms."""
    if tiles or any(plan.seq % r == 0 for r in (ROW_BLOCK, 8, 4)):
        return plan.seq
    whole_blocks = round_up(plan.seq, ROW_BLOCK)
    return whole_blocks if 8 * (whole_blocks - plan.seq) <= plan.seq else round_up(plan.seq, 8)


def _computed_keys(plan: AttentionPlan, lanes: int, tiles: str | None = None) -> int:
    """Keys the FP32 kernel computes: whole vectors. A count that is not (197, 77, 50) had left the
    scores, the row max and sum and the exps as scalar loops: DeiT-tiny's attention at 14 GFLOP/s."""
    return plan.keys if tiles else round_up(plan.keys, lanes)


def _clamped(index, last: int, padded: bool):
    return tirx.min(index, last) if padded else index


def _ones_column(plan: AttentionPlan, lanes: int, tiles: str | None = None) -> bool:
    # padded rows need the weighted sum to anchor the loops (the output has fewer rows), which the
    # ones column's form does
    return plan.value_dim % lanes != 0 or _computed_rows(plan, tiles) != plan.seq


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - a probe: any failure means no
        return False


def attention_kernel(
    plan: AttentionPlan,
    fast_math: bool = True,
    lanes: int = LANES,
    tiles: str | None = None,
    registers: int = REGISTERS,
) -> tirx.PrimFunc:
    """The fused kernel for `plan`; `tiles`: QK^T and PV in that precision and on those instructions (a
    key of PRODUCTS) where they fit, else FP32 (and a product schedule that fails says so on the kernel)."""
    precision = _fitting_products(plan, tiles) if tiles else None
    if precision:
        func = _attention_kernel(plan, fast_math, lanes, tiles=precision)
        if schedule_source(func) is not None:
            return func.with_attr(amx.TILES_ATTR, precision)
        fp32 = _attention_kernel(plan, fast_math, lanes, registers=registers)
        return fp32.with_attr(FAILURES_ATTR, func.attrs[FAILURES_ATTR])
    return _attention_kernel(plan, fast_math, lanes, registers=registers)


def _fitting_products(plan: AttentionPlan, tiles: str) -> str | None:
    if tiles == vnni.INT8_VNNI:
        return tiles if vnni.fits(plan) else None
    return amx.fitting_precision(plan, tiles)


def uses_tiles(kernel) -> str | None:
    """The PRODUCTS key a fused attention kernel computes its products with, None for FP32."""
    precision = kernel.attrs.get(amx.TILES_ATTR) if kernel.attrs else None
    return str(precision) if precision else None


def _attention_kernel(
    plan: AttentionPlan, fast_math: bool, lanes: int, tiles: str | None = None, registers: int = REGISTERS
) -> tirx.PrimFunc:
    q_src = te.placeholder(plan.q.shape, "float32", name="q")
    kt_src = te.placeholder(plan.kt.shape, "float32", name="kt")
    v_src = te.placeholder(plan.v.shape, "float32", name="v")
    bias = te.placeholder(static_shape(plan.bias), "float32", name="bias") if plan.bias is not None else None
    # sparse attention's gathers, read inside the kernel (see _layout_chains)
    tables = {
        name: [
            te.placeholder([int(d) for d in c.value.shape], str(c.value.dtype), name=f"{name}_index{n}")
            for n, c in enumerate(chain.tables)
        ]
        for name, chain in (("q", plan.q), ("kt", plan.kt), ("v", plan.v))
    }
    out = attention_te(q_src, kt_src, v_src, bias, plan, fast_math, lanes, tables, tiles)
    args = [q_src, kt_src, v_src, *([bias] if bias is not None else []), *tables["q"], *tables["kt"], *tables["v"], out]
    func = te.create_prim_func(args).without_attr("global_symbol")
    try:
        func = mark_scheduled(_schedule(func, plan, lanes, tiles, registers), "pass:fused-attention")
    except Exception as exc:  # noqa: BLE001 - tvm raises TVMError and friends
        # an unusual shape keeps the naive (correct) kernel; the default rules get it and the
        # failure is reported with the kernel
        func = schedule_failed(func, "pass:fused-attention", exc)
    return func.with_attr("op_pattern", OPAQUE_PATTERN)
