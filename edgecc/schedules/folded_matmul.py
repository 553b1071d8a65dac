"""The folded matmul kernel: a matmul reading its operands through layout chains, pre-scheduled.

The right operand is packed once per batch into [K, N] rows (contiguous in N) inside the kernel;
batch (or row blocks) in parallel, a rows x vectors register tile over K. Built by
`passes/fold_transposes_into_matmuls.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvm import te, tirx

from edgecc.schedules.common import OPAQUE_PATTERN, mark_scheduled, round_up, schedule_failed

if TYPE_CHECKING:
    from edgecc.passes._layout_chains import Chain

LANES = 8
ROW_TILE = (4, 2, 1)
VECTORS = (3, 2, 1)
MIN_PARALLEL_BATCHES = 4


def folded_matmul_te(a_src, b_src, a: Chain, b: Chain, shapes, lanes: int = LANES):
    a_shape, b_shape, out_shape = shapes
    k_extent, n = a_shape[-1], out_shape[-1]
    # columns padded to whole vectors (zeros in the packed B), the padding dropped by a final copy
    padded = round_up(n, lanes)

    def broadcast(index, shape):
        lead = list(index[len(index) - len(shape) :]) if shape else []
        return [0 if size == 1 else i for size, i in zip(shape, lead)]

    b_packed = te.compute(
        (*b_shape[:-1], padded),
        lambda *i: tirx.if_then_else(
            i[-1] < n, b.value(b_src, [*i[:-1], tirx.min(i[-1], n - 1)]), tirx.const(0.0, "float32")
        ),
        name="b_pack",
    )
    k = te.reduce_axis((0, k_extent), "k")
    product = te.compute(
        (*out_shape[:-1], padded),
        lambda *i: te.sum(
            a.value(a_src, [*broadcast(i[:-2], a_shape[:-2]), i[-2], k])
            * b_packed[(*broadcast(i[:-2], b_shape[:-2]), k, i[-1])],
            axis=k,
        ),
        name="folded_matmul",
    )
    if padded == n:
        return product
    return te.compute(out_shape, lambda *i: product[i], name="folded_matmul_unpad")


def _schedule(func, shapes, lanes: int):
    from tvm import s_tir

    a_shape, b_shape, out_shape = shapes
    sch = s_tir.Schedule(func)
    matmul, pack = sch.get_sblock("folded_matmul"), sch.get_sblock("b_pack")
    *lead, i, j, k = sch.get_loops(matmul)
    m = out_shape[-2]
    n = round_up(out_shape[-1], lanes)
    rows = next(r for r in ROW_TILE if m % r == 0)
    vec = next((v for v in (lanes, lanes // 2, 4, 2) if v and n % v == 0), 1)
    vectors = next(v for v in VECTORS if (n // vec) % v == 0)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, vec * vectors])
    ji_o, ji_i = sch.split(ji, [None, vec])
    sch.reorder(*lead, jo, io, k, ii, ji_o, ji_i)
    batches = 1
    for n_batch in out_shape[:-2]:
        batches *= n_batch
    # B packed per batch inside the parallel batch loop; with few batches (or B shared by all),
    # packed once up front and the row/column tiles are the parallel work
    per_batch = bool(lead) and list(b_shape[:-2]) == list(out_shape[:-2]) and batches >= MIN_PARALLEL_BATCHES
    unpad = sch.get_sblock("folded_matmul_unpad") if n != out_shape[-1] else None
    if per_batch:
        outer = sch.fuse(*lead) if len(lead) > 1 else lead[0]
        if unpad is not None:
            sch.reverse_compute_at(unpad, outer)
        sch.compute_at(pack, outer)
        sch.parallel(outer)
    else:
        fused = sch.fuse(*lead, jo, io) if lead else sch.fuse(jo, io)
        sch.parallel(fused)
        if unpad is not None:
            sch.parallel(sch.fuse(*sch.get_loops(unpad)[:-1]))
        pack_loops = sch.get_loops(pack)
        sch.parallel(pack_loops[0])
    sch.unroll(ii)
    sch.unroll(ji_o)
    if vec > 1:
        sch.vectorize(ji_i)
    sch.decompose_reduction(matmul, k)
    return sch.mod["main"].without_attr("global_symbol")


def folded_matmul_kernel(a: Chain, b: Chain, shapes, lanes: int = LANES) -> tirx.PrimFunc:
    a_src = te.placeholder(a.shape, "float32", name="a")
    b_src = te.placeholder(b.shape, "float32", name="b")
    out = folded_matmul_te(a_src, b_src, a, b, shapes, lanes)
    func = te.create_prim_func([a_src, b_src, out]).without_attr("global_symbol")
    try:
        func = mark_scheduled(_schedule(func, shapes, lanes), "pass:folded-matmul")
    except Exception as exc:  # noqa: BLE001 - tvm's ScheduleError and friends: the default rules get the kernel
        func = schedule_failed(func, "pass:folded-matmul", exc)
    return func.with_attr("op_pattern", OPAQUE_PATTERN)
