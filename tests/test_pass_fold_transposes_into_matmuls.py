import numpy as np

from edgecc.passes.fold_transposes_into_matmuls import FoldTransposesIntoMatmuls
from edgecc.passes.precision.calibration import build_on_host
from edgecc.passes.precision.dense_weights import list_dense_layers


def _function(params, body):
    from tvm import relax

    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb))
        bb.emit_func_output(out)
    return bb.get()


def _var(name, shape):
    from tvm import relax

    return relax.Var(name, relax.TensorType(shape, "float32"))


def _text(mod) -> str:
    return mod["main"].script(show_meta=False)


def test_matmul_by_a_transposed_activation(rng):
    """x @ y^T (FuseTransposeMatmul's case), batched, with y not a multiple of the vector width."""
    from tvm import relax

    x, y = _var("x", (3, 20, 16)), _var("y", (3, 13, 16))
    mod = _function([x, y], lambda bb: relax.op.matmul(x, relax.op.permute_dims(y, [0, 2, 1])))
    fold = FoldTransposesIntoMatmuls()
    after = fold(mod)
    text = _text(after)
    assert fold.stats.matmuls_folded == 1
    assert "R.permute_dims" not in text and "R.matmul" not in text and "folded_matmul" in text
    args = [rng.standard_normal((3, 20, 16)).astype("float32"), rng.standard_normal((3, 13, 16)).astype("float32")]
    np.testing.assert_allclose(build_on_host(after)(args)[0], build_on_host(mod)(args)[0], rtol=1e-5, atol=1e-5)


def test_attention_key_reshape_transpose_and_scale(rng):
    """q @ (k.view(B, S, H, D).permute(0, 2, 3, 1) * s): reshape, 4-D transpose and scale in one kernel."""
    from tvm import relax

    op = relax.op
    q, xk = _var("q", (1, 4, 16, 8)), _var("xk", (1, 16, 32))

    def body(bb):
        kt = bb.emit(
            op.multiply(op.permute_dims(op.reshape(xk, (1, 16, 4, 8)), [0, 2, 3, 1]), relax.const(0.35, "float32"))
        )
        return op.matmul(q, kt)

    mod = _function([q, xk], body)
    after = FoldTransposesIntoMatmuls()(mod)
    text = _text(after)
    assert "R.permute_dims" not in text and "R.reshape" not in text and "R.multiply" not in text
    assert "(q, xk)" in text
    args = [rng.standard_normal((1, 4, 16, 8)).astype("float32"), rng.standard_normal((1, 16, 32)).astype("float32")]
    np.testing.assert_allclose(build_on_host(after)(args)[0], build_on_host(mod)(args)[0], rtol=1e-5, atol=1e-5)


def test_left_operand_transposed_and_right_shared_by_every_batch(rng):
    from tvm import relax

    a, b = _var("a", (2, 12, 10)), _var("b", (12, 24))
    mod = _function([a, b], lambda bb: relax.op.matmul(relax.op.permute_dims(a, [0, 2, 1]), b))
    after = FoldTransposesIntoMatmuls()(mod)
    assert "R.permute_dims" not in _text(after)
    args = [rng.standard_normal((2, 12, 10)).astype("float32"), rng.standard_normal((12, 24)).astype("float32")]
    np.testing.assert_allclose(build_on_host(after)(args)[0], build_on_host(mod)(args)[0], rtol=1e-5, atol=1e-5)


def test_constant_weights_are_left_to_the_precision_passes(rng):
    """matmul(x, permute_dims(W)) with a constant W is what the int8/fp16 passes match: untouched."""
    from tvm import relax

    w = relax.const(rng.standard_normal((128, 64)).astype("float32"))
    x = _var("x", (1, 8, 64))
    mod = _function([x], lambda bb: relax.op.matmul(x, relax.op.permute_dims(w)))
    after = FoldTransposesIntoMatmuls()(mod)
    assert after.same_as(mod)
    from edgecc.passes.precision.dense_weights import fold_weight_transposes

    assert len(list_dense_layers(fold_weight_transposes(after))) == 1


def test_plain_and_reshape_only_operands_are_left_alone():
    """A reshape is a free view: nothing to fold when no transpose or scaling is in the way."""
    from tvm import relax

    x, y, z = _var("x", (4, 8)), _var("y", (2, 4, 4)), _var("z", (8, 4))
    plain = _function([x, z], lambda bb: relax.op.matmul(x, z))
    reshaped = _function([x, y], lambda bb: relax.op.matmul(x, relax.op.reshape(y, (8, 4))))
    for mod in (plain, reshaped):
        assert FoldTransposesIntoMatmuls()(mod).same_as(mod)
