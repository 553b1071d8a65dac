import numpy as np
import pytest
import tvm

from edgecc.passes.fuse_layer_norm import FuseLayerNorm
from edgecc.passes.precision.calibration import build_on_host


def decomposed_layer_norm(rng, square="power", root="sqrt", affine=True, axes=(-1,), shape=(2, 8, 16)):
    """ReduceMean, Sub, Pow/Mul, ReduceMean, Add eps, Sqrt, Div (or Rsqrt, Mul), [Mul gamma, Add beta]."""
    from tvm import relax

    op, c = relax.op, relax.const
    norm_shape = [shape[a] for a in axes]
    gamma = rng.standard_normal(norm_shape).astype("float32")
    beta = rng.standard_normal(norm_shape).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            mean = bb.emit(op.mean(x, axis=list(axes), keepdims=True))
            d = bb.emit(op.subtract(x, mean))
            sq = bb.emit(op.power(d, c(2.0, "float32")) if square == "power" else op.multiply(d, d))
            var = bb.emit(op.mean(sq, axis=list(axes), keepdims=True))
            var_eps = bb.emit(op.add(var, c(1e-5, "float32")))
            if root == "sqrt":
                y = bb.emit(op.divide(d, op.sqrt(var_eps)))
            else:
                y = bb.emit(op.multiply(d, op.rsqrt(var_eps)))
            if affine:
                y = bb.emit(op.multiply(y, c(gamma)))
                y = bb.emit(op.add(y, c(beta)))
            out = bb.emit_output(op.multiply(y, c(2.0, "float32")))  # a consumer after the LayerNorm
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize(
    "square,root,affine", [("power", "sqrt", True), ("multiply", "rsqrt", False), ("power", "rsqrt", True)]
)
def test_decomposed_layer_norm_becomes_one_op(rng, square, root, affine):
    mod = decomposed_layer_norm(rng, square, root, affine)
    after = FuseLayerNorm()(mod)
    text = after["main"].script(show_meta=False)
    assert text.count("R.nn.layer_norm") == 1
    for gone in ("R.mean", "R.subtract", "R.power", "R.sqrt", "R.rsqrt", "R.divide", "R.add"):
        assert gone not in text
    assert text.count("R.multiply") == 1  # only the consumer is left
    x = (rng.standard_normal((2, 8, 16)) * 3 + 1).astype("float32")
    np.testing.assert_allclose(build_on_host(after)([x])[0], build_on_host(mod)([x])[0], rtol=1e-5, atol=2e-5)


def test_normalising_two_trailing_axes(rng):
    mod = decomposed_layer_norm(rng, axes=(1, 2), shape=(2, 4, 8))
    after = FuseLayerNorm()(mod)
    assert "R.nn.layer_norm" in after["main"].script(show_meta=False)
    x = rng.standard_normal((2, 4, 8)).astype("float32")
    np.testing.assert_allclose(build_on_host(after)([x])[0], build_on_host(mod)([x])[0], rtol=1e-5, atol=2e-5)


def test_a_mean_over_a_leading_axis_is_not_a_layer_norm(rng):
    mod = decomposed_layer_norm(rng, axes=(1,), shape=(2, 8, 8))
    assert FuseLayerNorm()(mod).same_as(mod)


def test_layer_norm_already_fused_is_a_no_op(rng):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 16), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(
                relax.op.nn.layer_norm(
                    x, relax.const(np.ones(16, "float32")), relax.const(np.zeros(16, "float32")), axes=[-1]
                )
            )
        bb.emit_func_output(out)
    mod = bb.get()
    after = FuseLayerNorm()(mod)
    assert after.same_as(mod)
    tvm.ir.assert_structural_equal(after, mod)
