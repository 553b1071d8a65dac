"""Bias + GELU in the matmul's kernel after the pipeline's lower step, however GELU is spelt."""

from types import SimpleNamespace

import numpy as np
import pytest

from edgecc.options import CompileOptions
from edgecc.passes.fuse_bias_gelu_epilogue import FuseBiasGeluEpilogue
from edgecc.passes.precision.calibration import build_on_host


def matmul_bias_gelu(rng, gelu: str):
    """x @ W + b, then GELU as the ONNX exporter writes it ("erf"), R.nn.gelu or R.nn.gelu_tanh."""
    from tvm import relax

    op, c = relax.op, (lambda v: relax.const(v, "float32"))
    w = relax.const((rng.standard_normal((32, 48)) * 0.2).astype("float32"))
    b = relax.const(rng.standard_normal(48).astype("float32"))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 32), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = bb.emit(op.add(op.matmul(x, w), b))
            if gelu == "erf":
                e = bb.emit(op.erf(op.divide(h, c(1.4142135381698608))))
                y = op.multiply(op.multiply(h, op.add(e, c(1.0))), c(0.5))
            else:
                y = getattr(op.nn, gelu)(h)
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def lowered_kernels(mod, fast_math=True) -> dict:
    """{PrimFunc name: TIR text} after edgecc.pipeline.lower, the pipeline's own step."""
    import tvm

    from edgecc.pipeline import lower
    from edgecc.targets import load_target

    ctx = SimpleNamespace(
        options=CompileOptions(fast_math=fast_math), relax_module=mod, target=load_target("host"), lowered=None
    )
    lowered = lower(ctx)
    return {gv.name_hint: f.script() for gv, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def _one_fused_kernel(kernels: dict) -> tuple[str, str]:
    """(name, TIR) of the module's only kernel, which must hold the matmul."""
    assert len(kernels) == 1, list(kernels)
    ((name, tir),) = kernels.items()
    assert "matmul" in name and 'T.sblock("matmul")' in tir
    return name, tir


@pytest.mark.parametrize("fast_math,math", [(True, "fast_erf"), (False, "T.erf")])
def test_exported_erf_gelu_is_already_in_the_matmul_kernel(rng, fast_math, math):
    """No pass needed: TVM's FuseOps puts bias + erf GELU in the matmul's epilogue."""
    mod = matmul_bias_gelu(rng, "erf")
    assert FuseBiasGeluEpilogue()(mod).same_as(mod)
    name, tir = _one_fused_kernel(lowered_kernels(mod, fast_math))
    assert "add" in name and ("fast_erf" in name) == fast_math and (math in tir or math in name)


@pytest.mark.parametrize("gelu,math", [("gelu", "fast_erf"), ("gelu_tanh", "fast_tanh")])
def test_relax_gelu_is_written_out_so_the_epilogue_gets_fast_math(rng, gelu, math):
    mod = matmul_bias_gelu(rng, gelu)
    # without the pass the kernel is fused too, but calls libm erf / tanh per element
    name, tir = _one_fused_kernel(lowered_kernels(mod))
    assert name.endswith(gelu) and math not in name
    after = FuseBiasGeluEpilogue()(mod)
    text = after["main"].script(show_meta=False)
    assert "R.nn.gelu" not in text and ("R.erf" if gelu == "gelu" else "R.tanh") in text
    name, tir = _one_fused_kernel(lowered_kernels(after))
    assert math in name and "add" in name
    x = rng.standard_normal((1, 16, 32)).astype("float32")
    np.testing.assert_allclose(build_on_host(after)([x])[0], build_on_host(mod)([x])[0], rtol=1e-5, atol=1e-5)
