"""Fold the transposes (and reshapes, scalar scalings) feeding a matmul of activations into the matmul.

`matmul(x, permute_dims(y))` -- and more generally a matmul whose operands reach their source
tensors through `reshape` / `permute_dims` / multiply-or-divide by a scalar constant (the attention's
`k.view(B, S, H, D).permute(0, 2, 3, 1) * scale`) -- becomes one kernel that reads the sources
through the combined index map: no transposed copy, no separate scaling pass. TVM's
`relax.transform.FuseTransposeMatmul` does the first case only (a swap of the last two axes,
straight into the matmul) and leaves the kernel to the schedules; its NT loop nest, vectorised over
the output columns, reads the transposed operand with strided gathers. Here the right operand is
packed once per batch into [K, N] rows (contiguous in N) inside the kernel, and the kernel carries
its own CPU schedule: batch (or row blocks) in parallel, a rows x vectors register tile over K.

Only matmuls where neither operand is a constant are touched: the precision passes match
`matmul(x, W)` / `matmul(x, permute_dims(W))` on constant weights, and FoldConstant folds a constant
weight's transpose for free. Chains of reshapes alone are left alone (a reshape is a free view).
"""

from __future__ import annotations

import os

import tvm
from tvm import relax, te, tirx
from tvm.ir.expr import Constant

from ._bindings import binding_map, replace_bindings
from ._layout_chains import Chain, dtype, is_op, static_shape, strip_chain

LANES = 8
ROW_TILE = (4, 2, 1)
VECTORS = (3, 2, 1)
MIN_PARALLEL_BATCHES = 4
_OPAQUE = 8


def _plan(call, values):
    if not is_op(call, "relax.matmul") or len(call.args) != 2 or dtype(call) != "float32":
        return None
    a_expr, b_expr = call.args
    shapes = [static_shape(x) for x in (a_expr, b_expr, call)]
    if any(s is None or len(s) < 2 for s in shapes) or any(dtype(x) != "float32" for x in (a_expr, b_expr)):
        return None

    def producer(expr):
        return values.get(expr) if isinstance(expr, relax.Var) else None

    a, b = strip_chain(a_expr, producer), strip_chain(b_expr, producer)
    if isinstance(a.source, Constant) or isinstance(b.source, Constant):
        return None
    if isinstance(a_expr, Constant) or isinstance(b_expr, Constant):
        return None
    worth = any(step[0] != "reshape" for chain in (a, b) for step in chain.steps)
    return (a, b, shapes) if worth else None


def folded_matmul_te(a_src, b_src, a: Chain, b: Chain, shapes, lanes: int = LANES):
    a_shape, b_shape, out_shape = shapes
    k_extent, n = a_shape[-1], out_shape[-1]
    # columns padded to whole vectors (zeros in the packed B), the padding dropped by a final copy
    padded = n if n % lanes == 0 else -(-n // lanes) * lanes

    def broadcast(index, shape):
        lead = list(index[len(index) - len(shape):]) if shape else []
        return [0 if size == 1 else i for size, i in zip(shape, lead)]

    b_packed = te.compute((*b_shape[:-1], padded), lambda *i: tirx.if_then_else(
        i[-1] < n, b.value(b_src, [*i[:-1], tirx.min(i[-1], n - 1)]), tirx.const(0.0, "float32")), name="b_pack")
    k = te.reduce_axis((0, k_extent), "k")
    product = te.compute((*out_shape[:-1], padded), lambda *i: te.sum(
        a.value(a_src, [*broadcast(i[:-2], a_shape[:-2]), i[-2], k])
        * b_packed[(*broadcast(i[:-2], b_shape[:-2]), k, i[-1])], axis=k), name="folded_matmul")
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
    n = -(-out_shape[-1] // lanes) * lanes if out_shape[-1] % lanes else out_shape[-1]
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
        func = _schedule(func, shapes, lanes).with_attr("tirx.is_scheduled", True)
    except Exception as exc:  # keep the naive kernel
        if os.environ.get("EDGECC_DEBUG_SCHEDULES"):
            print(f"folded matmul schedule skipped: {exc}")
    return func.with_attr("op_pattern", _OPAQUE)


def fold_transposes_into_matmuls(mod: tvm.IRModule, lanes: int = LANES, summary: dict | None = None) -> tvm.IRModule:
    """Every matmul of two activations fed through transposes / scalings becomes one folded kernel."""
    folded = [0]

    def make(a, b, shapes, ty):
        def build(mutator):
            gvar = mutator.builder_.add_func(folded_matmul_kernel(a, b, shapes, lanes), "folded_matmul")
            folded[0] += 1
            return relax.call_tir(gvar, [mutator.visit_expr(a.source), mutator.visit_expr(b.source)], ty)
        return build

    def find(func):
        values = binding_map(func)
        found = {}
        for var, value in values.items():
            plan = _plan(value, values)
            if plan is not None:
                found[var] = make(*plan, var.ty)
        return found

    result = replace_bindings(mod, find)
    if summary is not None:
        summary["matmuls_folded"] = folded[0]
    return result


class FoldTransposesIntoMatmuls:
    """The pipeline step; the count goes to options.extra["fusion"]["matmuls_folded"]."""

    def __init__(self, options=None, lanes: int = LANES):
        self.options = options
        self.lanes = lanes

    def __call__(self, mod):
        summary: dict = {}
        result = fold_transposes_into_matmuls(mod, self.lanes, summary)
        extra = getattr(self.options, "extra", None)
        if isinstance(extra, dict):
            extra.setdefault("fusion", {}).update(summary)
        return result

