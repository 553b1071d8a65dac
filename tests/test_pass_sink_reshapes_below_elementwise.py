"""sink_reshapes_below_elementwise: a Linear's GELU and residual add move next to its matmul, so
FuseOps puts them in the matmul's epilogue; the result is unchanged."""

import numpy as np
import tvm

from edgecc.passes.precision.calibration import build_on_host
from edgecc.passes.sink_reshapes_below_elementwise import SinkReshapesBelowElementwise


def exported_linear_gelu_residual(rng, tokens=8, hidden=16, inner=32):
    """As torch.onnx writes a BERT FFN input: reshape to 2-D, matmul + bias, reshape back, erf-GELU
    on the 3-D view, then a residual add of the block's input (through a second Linear)."""
    from tvm import relax

    op, c = relax.op, relax.const
    w1 = c(rng.standard_normal((hidden, inner)).astype("float32"))
    b1 = c(rng.standard_normal(inner).astype("float32"))
    w2 = c(rng.standard_normal((inner, hidden)).astype("float32"))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, tokens, hidden), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = bb.emit(op.reshape(x, [tokens, hidden]))
            h = bb.emit(op.add(op.matmul(h, w1), b1))
            h3 = bb.emit(op.reshape(h, [1, tokens, inner]))
            erf = bb.emit(op.erf(op.divide(h3, c(1.4142135, "float32"))))
            gelu = bb.emit(op.multiply(op.multiply(h3, op.add(erf, c(1.0, "float32"))), c(0.5, "float32")))
            g = bb.emit(op.reshape(gelu, [tokens, inner]))
            down = bb.emit(op.reshape(op.matmul(g, w2), [1, tokens, hidden]))
            out = bb.emit_output(op.add(down, x))
        bb.emit_func_output(out)
    return bb.get()


def _ops(mod) -> list[str]:
    from tvm import relax

    names = []
    relax.analysis.post_order_visit(
        mod["main"],
        lambda e: names.append(e.op.name) if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None,
    )
    return names


def test_gelu_and_residual_follow_the_matmul_and_fuse_into_its_kernel(rng):
    from tvm import relax

    before = exported_linear_gelu_residual(rng)
    sink = SinkReshapesBelowElementwise()
    after = sink(before)
    assert sink.stats.reshapes_sunk >= 6
    # the reshape back to 2-D before the second matmul cancelled the one after the first
    assert _ops(before).count("relax.reshape") == 4 and _ops(after).count("relax.reshape") == 3

    def kernels(mod):
        lowered = tvm.transform.Sequential(
            [
                relax.transform.LegalizeOps(),
                relax.transform.AnnotateTIROpPattern(),
                relax.transform.FuseOps(),
                relax.transform.FuseTIR(),
            ]
        )(mod)
        return [gv.name_hint for gv, f in lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]

    # before: GELU is a kernel of its own; after: it is in the first matmul's kernel
    assert any("erf" in k and "matmul" not in k for k in kernels(before))
    assert any("matmul" in k and "erf" in k for k in kernels(after))
    assert any("matmul" in k and k.count("add") >= 1 for k in kernels(after))
    x = rng.standard_normal((1, 8, 16)).astype("float32")
    (expected,) = build_on_host(before)([x])
    (actual,) = build_on_host(after)([x])
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_broadcast_operands_are_left_alone(rng):
    from tvm import relax

    op = relax.op
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((8, 16), "float32"))
    row = relax.Var("row", relax.TensorType((1, 1, 16), "float32"))
    with bb.function("main", [x, row]):
        with bb.dataflow():
            view = bb.emit(op.reshape(x, [1, 8, 16]))
            out = bb.emit_output(op.add(view, row))
        bb.emit_func_output(out)
    before = bb.get()
    after = SinkReshapesBelowElementwise()(before)
    assert after.script() == before.script()


def test_a_broadcast_reshaped_operand_is_left_alone(rng):
    """A conv bias [C] reshaped to [1, C, 1, 1] and added to [1, C, H, W] (MobileViT, SwiftFormer)."""
    from tvm import relax

    op = relax.op
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 6, 6), "float32"))
    bias = relax.Var("bias", relax.TensorType((4,), "float32"))
    with bb.function("main", [x, bias]):
        with bb.dataflow():
            column = bb.emit(op.reshape(bias, [1, 4, 1, 1]))
            out = bb.emit_output(op.add(x, column))
        bb.emit_func_output(out)
    before = bb.get()
    assert SinkReshapesBelowElementwise()(before).script() == before.script()
