"""A tiny Relax module (matmul + GELU + row sum) that every backend can build in about a second."""

from __future__ import annotations

import pytest


def build_tiny_relax_module():
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 16), "float32"))
    w = relax.Var("w", relax.TensorType((16, 8), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            z = bb.emit(relax.op.nn.gelu(y))
            out = bb.emit_output(bb.emit(relax.op.sum(z, axis=[1])))
        bb.emit_func_output(out)
    # Legalize and fuse into TIR kernels, as the pipeline's lower step does.
    return relax.get_pipeline("zero")(bb.get())


@pytest.fixture
def tiny_relax_module():
    return build_tiny_relax_module()
