"""Constant matmul weights repacked to panels: a hand-built Relax module before and after."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from edgecc.schedules import apply_cpu_default_schedules
from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array, pack_weight_arguments
from edgecc.targets import load_target

RNG = np.random.default_rng(0)
W = RNG.standard_normal((48, 64)).astype("float32")
B = RNG.standard_normal(64).astype("float32")


def _dense_module(weight_is_input: bool):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([1, 8, 48], "float32"))
    params = [x]
    if weight_is_input:
        w = relax.Var("w", relax.TensorType([48, 64], "float32"))
        params.append(w)
    else:
        w = relax.const(W)
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(relax.op.add(relax.op.matmul(x, w), relax.const(B)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    seq = tvm.transform.Sequential(
        [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    return seq(bb.get())


def _constants_shapes(mod) -> list[list[int]]:
    shapes = []

    def visit(expr):
        if isinstance(expr, tvm.ir.expr.Constant) and hasattr(expr.value, "shape") and len(expr.value.shape) >= 2:
            shapes.append([int(d) for d in expr.value.shape])

    relax.analysis.post_order_visit(mod["main"], visit)
    return shapes


def _run(mod, *args):
    target = load_target("host")
    with target.tvm():
        ex = relax.build(mod, target.tvm())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


def test_constant_weight_is_packed_into_panels_and_computes_the_same():
    before = _dense_module(weight_is_input=False)
    assert _constants_shapes(before) == [[48, 64]]
    after = apply_cpu_default_schedules(before, load_target("host"))
    kernels = [f for _, f in after.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    (entry,) = [e for f in kernels if f.attrs and PACKED_ATTR in f.attrs for e in f.attrs[PACKED_ATTR]]
    position, n_axis, tile = (int(v) for v in entry)
    assert (position, n_axis) == (1, 1) and 64 % tile == 0
    assert _constants_shapes(after) == [[64 // tile, 48, tile]]
    assert _constants_shapes(before) == [[48, 64]]  # the caller's module keeps its layout
    x = RNG.standard_normal((1, 8, 48)).astype("float32")
    np.testing.assert_allclose(_run(after, x), x @ W + B, rtol=1e-5, atol=1e-5)
    again = pack_weight_arguments(after)  # idempotent: a packed argument is not packed twice
    assert _constants_shapes(again) == [[64 // tile, 48, tile]]


def test_weight_passed_at_run_time_keeps_its_layout():
    after = apply_cpu_default_schedules(_dense_module(weight_is_input=True), load_target("host"))
    assert not any(
        f.attrs and PACKED_ATTR in f.attrs for _, f in after.functions_items() if isinstance(f, tvm.tirx.PrimFunc)
    )
    x = RNG.standard_normal((1, 8, 48)).astype("float32")
    np.testing.assert_allclose(_run(after, x, W), x @ W + B, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_axis", [0, 1])
def test_pack_array_puts_each_tile_of_columns_in_one_contiguous_panel(n_axis):
    kn = np.arange(6 * 8, dtype="float32").reshape(6, 8)  # K=6, N=8
    packed = pack_array(kn if n_axis == 1 else kn.T, n_axis, tile=4)
    assert packed.shape == (2, 6, 4)
    np.testing.assert_array_equal(packed[1, 2], kn[2, 4:8])  # panel 1, row k=2: columns 4..7
