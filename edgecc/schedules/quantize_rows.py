"""Run-time (dynamic) per-row quantization of a dense layer's input: one pre-scheduled kernel.

For each row x of the input (a token's activations): lo = min(min x, 0), hi = max(max x, 0),
scale = (hi - lo) / (qmax - qmin), zero point zp = qmin - round(lo / scale), and
q = clip(round(x / scale) + zp, qmin, qmax). Then x ~= scale * (q - zp), and a dense layer
y = x @ W with per-column weight scales w_j (W ~= w * Wq) becomes

    y[i, j] = scale_i * w_j * (sum_k q[i, k] * Wq[k, j]  -  zp_i * colsum(Wq)[j])

where the sum is the dot-product instruction's int32 accumulation and colsum(Wq) is a compile-time
constant (edgecc.passes.quantize_dense_layers_int8). Asymmetric per row costs nothing extra (the
zp term is needed for the u8 instructions anyway) and uses the whole 8-bit range for one-sided
inputs such as GELU outputs. No calibration is needed.

One kernel, parallel over rows, one pass over each row for its range (vector min/max partials),
one for the codes: the several small kernels TVM's FuseOps makes of the same ops cost a thread-pool
launch each, and a dense input is quantized once however many layers read it (Q, K and V).
"""

from __future__ import annotations

from edgecc.schedules.common import OPAQUE_PATTERN, mark_scheduled


def quantize_rows_te(x, qmin: int, qmax: int, dtype: str, lanes: int):
    """TE of (q, scale, zero point) for x [..., K] float32; K % lanes == 0 vectorises the range."""
    from tvm import te, tirx

    *lead, k_extent = [int(d) for d in x.shape]
    parts = lanes if k_extent % lanes == 0 else 1
    # (max, min) in one reduction: one pass over the row, and one block to place in the row loop
    max_min = te.comm_reducer(
        lambda a, b: (tirx.max(a[0], b[0]), tirx.min(a[1], b[1])),
        lambda t0, t1: (tirx.min_value(t0), tirx.max_value(t1)),
        name="max_min",
    )
    ko = te.reduce_axis((0, k_extent // parts), name="ko")
    hi_part, lo_part = te.compute(
        (*lead, parts), lambda *i: max_min((x[(*i[:-1], ko * parts + i[-1])],) * 2, axis=ko), name="range_part"
    )
    lane = te.reduce_axis((0, parts), name="lane")
    hi, lo = te.compute(
        (*lead, 1), lambda *i: max_min((hi_part[(*i[:-1], lane)], lo_part[(*i[:-1], lane)]), axis=lane), name="range"
    )
    zero = tirx.const(0.0, "float32")
    levels = tirx.const(float(qmax - qmin), "float32")
    tiny = tirx.const(1e-30, "float32")
    scale = te.compute(
        (*lead, 1),
        lambda *i: tirx.max((tirx.max(hi[i], zero) - tirx.min(lo[i], zero)) / levels, tiny),
        name="row_scale",
    )
    zero_point = te.compute(
        (*lead, 1),
        lambda *i: (tirx.const(qmin, "float32") - tirx.round(tirx.min(lo[i], zero) / scale[i])).astype("int32"),
        name="row_zero_point",
    )
    inverse = te.compute((*lead, 1), lambda *i: tirx.const(1.0, "float32") / scale[i], name="inverse")

    def code(*i):
        row = (*i[:-1], 0)
        value = tirx.round(x[i] * inverse[row]) + zero_point[row].astype("float32")
        clipped = tirx.max(tirx.min(value, tirx.const(float(qmax), "float32")), tirx.const(float(qmin), "float32"))
        return clipped.astype(dtype)

    q = te.compute(x.shape, code, name="q")
    # the outputs are copies of the row values, so that the row values can be computed inside the
    # row loop (an output block cannot be moved there)
    return (
        q,
        te.compute(scale.shape, lambda *i: scale[i], name="scale"),
        te.compute(zero_point.shape, lambda *i: zero_point[i], name="zero_point"),
    )


def quantize_rows_kernel(
    shape, qmin: int, qmax: int, dtype: str, lanes: int, source: str = "pass:quantize_dense_layers_int8"
):
    """The pre-scheduled PrimFunc (x) -> (q, scale, zero_point)."""
    from tvm import s_tir, te

    x = te.placeholder(shape, "float32", name="x")
    q, scale, zero_point = quantize_rows_te(x, qmin, qmax, dtype, lanes)
    func = te.create_prim_func([x, q, scale, zero_point]).without_attr("global_symbol")
    sch = s_tir.Schedule(func)
    # every stage inside the first stage's row loop, in data-flow order
    rows = sch.get_loops(sch.get_sblock("range_part"))[: len(shape) - 1]
    row = sch.fuse(*rows) if len(rows) > 1 else rows[0]
    for name in ("range", "row_scale", "row_zero_point", "inverse", "q", "scale", "zero_point"):
        sch.reverse_compute_at(sch.get_sblock(name), row)
    sch.parallel(row)
    if int(shape[-1]) % lanes == 0:
        column = sch.get_loops(sch.get_sblock("q"))[-1]
        _, vector = sch.split(column, [None, lanes])
        sch.vectorize(vector)
        block = sch.get_sblock("range_part")
        lane, reduce = sch.get_loops(block)[-2:]
        sch.reorder(reduce, lane)
        sch.vectorize(lane)
    return mark_scheduled(sch.mod["main"], source).with_attr("op_pattern", OPAQUE_PATTERN)
