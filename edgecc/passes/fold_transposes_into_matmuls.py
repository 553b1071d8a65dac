"""Fold the transposes (and reshapes, scalar scalings) feeding a matmul of activations into the matmul.

`matmul(x, permute_dims(y))` -- and more generally a matmul whose operands reach their source
tensors through `reshape` / `permute_dims` / multiply-or-divide by a scalar constant (the attention's
`k.view(B, S, H, D).permute(0, 2, 3, 1) * scale`) -- becomes one kernel that reads the sources
through the combined index map: no transposed copy, no separate scaling pass. TVM's
`relax.transform.FuseTransposeMatmul` does the first case only (a swap of the last two axes,
straight into the matmul) and leaves the kernel to the schedules; its NT loop nest, vectorised over
the output columns, reads the transposed operand with strided gathers. Here the right operand is
packed once per batch into [K, N] rows (contiguous in N) inside the kernel, and the kernel carries
its own CPU schedule (`edgecc.schedules.folded_matmul`): batch (or row blocks) in parallel, a
rows x vectors register tile over K.

Only matmuls where neither operand is a constant are touched: the precision passes match
`matmul(x, W)` / `matmul(x, permute_dims(W))` on constant weights, and FoldConstant folds a constant
weight's transpose for free. Chains of reshapes alone are left alone (a reshape is a free view).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.ir.expr import Constant

from edgecc.passes._bindings import binding_map, replace_bindings
from edgecc.passes._layout_chains import dtype, is_op, static_shape, strip_chain
from edgecc.schedules.folded_matmul import LANES, folded_matmul_kernel


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


@dataclass(frozen=True)
class FoldTransposesStats:
    matmuls_folded: int = 0


@tvm.transform.module_pass(opt_level=0, name="fold_transposes_into_matmuls")
class FoldTransposesIntoMatmuls:
    """Every matmul of two activations fed through transposes / scalings becomes one folded kernel."""

    def __init__(self, lanes: int = LANES):
        self.lanes = lanes
        self.stats = FoldTransposesStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        folded = [0]

        def make(a, b, shapes, ty):
            def build(mutator):
                gvar = mutator.builder_.add_func(folded_matmul_kernel(a, b, shapes, self.lanes), "folded_matmul")
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
        self.stats = FoldTransposesStats(folded[0])
        return result
