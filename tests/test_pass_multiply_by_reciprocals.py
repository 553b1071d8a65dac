"""multiply_by_reciprocals on a hand-built module: GELU's x / sqrt(2) and a per-channel divisor become
multiplies within one rounding of the quotients; a divisor holding a zero, a divisor that is not a
constant and an integer division stay divisions."""

import math

import numpy as np
from tvm import relax

from edgecc.passes.multiply_by_reciprocals import MultiplyByReciprocals, reciprocal
from edgecc.passes.precision.calibration import build_on_host


def _ops(mod, name) -> int:
    found = []
    relax.analysis.post_order_visit(
        mod["main"],
        lambda e: found.append(e) if isinstance(e, relax.Call) and getattr(e.op, "name", "") == name else None,
    )
    return len(found)


def _module(rng):
    op = relax.op
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 8), "float32"))
    y = relax.Var("y", relax.TensorType((4, 8), "float32"))
    with bb.function("main", [x, y]):
        with bb.dataflow():
            h = bb.emit(op.divide(x, relax.const(math.sqrt(2), "float32")))  # GELU as exported
            gelu = bb.emit(
                op.multiply(op.multiply(x, relax.const(0.5, "float32")), op.add(op.erf(h), relax.const(1.0, "float32")))
            )
            scales = rng.uniform(0.1, 3.0, 8).astype("float32")
            per_channel = bb.emit(op.divide(gelu, relax.const(scales)))
            with_zero = bb.emit(op.divide(per_channel, relax.const(np.array([2.0, 0.0] * 4, "float32"))))
            by_tensor = bb.emit(op.divide(with_zero, y))  # not a constant
            out = bb.emit_output(by_tensor)
        bb.emit_func_output(out)
    return bb.get()


def test_constant_divisions_become_multiplies_with_the_same_numbers(rng):
    before = _module(rng)
    rewrite = MultiplyByReciprocals()
    after = rewrite(before)
    assert rewrite.stats.divisions_rewritten == 2
    assert _ops(before, "relax.divide") == 4 and _ops(after, "relax.divide") == 2
    assert _ops(after, "relax.multiply") == _ops(before, "relax.multiply") + 2
    x = rng.standard_normal((4, 8)).astype("float32")
    y = rng.uniform(0.5, 2.0, (4, 8)).astype("float32")
    (want,) = build_on_host(before)([x, y])
    (got,) = build_on_host(after)([x, y])
    finite = np.isfinite(want)
    assert not finite.all()  # the zero divisor's columns: inf or NaN, and the same in both
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    np.testing.assert_allclose(got[finite], want[finite], rtol=4e-7, atol=0)


def test_a_module_without_constant_float_divisions_is_returned_unchanged():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4,), "int32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.floor_divide(x, relax.const(np.array(3, "int32"))))
        bb.emit_func_output(out)
    mod = bb.get()
    rewrite = MultiplyByReciprocals()
    assert rewrite(mod).same_as(mod) and rewrite.stats.divisions_rewritten == 0


def test_only_divisors_whose_reciprocal_keeps_every_result_finite_and_normal():
    assert reciprocal(np.array([4.0, 0.5], "float32")).tolist() == [0.25, 2.0]
    assert reciprocal(np.array([1.0, 0.0], "float32")) is None
    assert reciprocal(np.array([np.inf], "float32")) is None
    assert reciprocal(np.array([1e-39], "float32")) is None  # subnormal: 1 / c overflows
    assert reciprocal(np.array([3e38], "float32")) is None  # 1 / c is subnormal
    assert reciprocal(np.array([2, 4], "int32")) is None
