"""PadMatmulColumns: 312-wide matmuls (TinyBERT) padded to 320 columns and sliced back, exactly."""

import numpy as np
import pytest

from edgecc.passes.pad_matmul_columns import PadMatmulColumns, padded_columns
from edgecc.passes.precision.calibration import build_on_host


def matmul_residual(rng, columns: int):
    """x @ W + r, as a BERT layer's attention output projection."""
    from tvm import relax

    w = relax.const((rng.standard_normal((32, columns)) * 0.2).astype("float32"))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 32), "float32"))
    r = relax.Var("r", relax.TensorType((1, 16, columns), "float32"))
    with bb.function("main", [x, r]):
        with bb.dataflow():
            h = bb.emit(relax.op.matmul(x, w))
            out = bb.emit_output(relax.op.add(h, r))
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, *args):
    return build_on_host(mod)(list(args))[0]


def test_padded_columns():
    assert padded_columns(312, 16) == 320
    assert padded_columns(320, 16) is None  # already whole vectors
    assert padded_columns(12, 16) is None  # narrower than one vector
    assert padded_columns(300, 16) == 304
    assert padded_columns(17, 16) is None  # 32 would be 88% more arithmetic
    assert padded_columns(312, 1) is None


def test_pads_columns_slices_back_and_matches(rng):
    from tvm import relax

    mod = matmul_residual(rng, 312)
    padder = PadMatmulColumns(lanes=16)
    after = padder(mod)
    assert padder.stats.matmuls_padded == 1 and padder.stats.columns_added == 8
    text = after.script()
    assert "R.strided_slice" in text and "(1, 16, 320)" in text
    # the function's signature and result are unchanged
    relax.analysis.well_formed(after)  # raises on the first violation
    assert [int(d) for d in after["main"].ret_ty.shape] == [1, 16, 312]

    x = rng.standard_normal((1, 16, 32)).astype("float32")
    r = rng.standard_normal((1, 16, 312)).astype("float32")
    np.testing.assert_allclose(_run(after, x, r), _run(mod, x, r), rtol=1e-5, atol=1e-5)


def _scheduled_kernel(mod) -> tuple[str, str]:
    """(name, scheduled TIR) of the module's one kernel after the pipeline's lower step and the
    default CPU schedules for 16-lane vectors."""
    import tvm

    from edgecc.backends import lowering_pipeline
    from edgecc.schedules import apply_cpu_default_schedules
    from edgecc.targets import load_target

    target = load_target("host")
    with target.tvm(), tvm.transform.PassContext(opt_level=3):
        lowered = lowering_pipeline(True)(mod)
    scheduled = apply_cpu_default_schedules(lowered, target)
    kernels = {gv.name_hint: f.script() for gv, f in scheduled.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert len(kernels) == 1, list(kernels)
    return next(iter(kernels.items()))


def test_slice_lands_in_the_matmul_kernel_on_full_vectors(rng, monkeypatch):
    """One kernel (matmul, slice, residual add) whose register tile is vectorised on whole vectors:
    without the pass, 312 columns take 8-lane vectors on a 16-lane target."""
    import edgecc.schedules as schedules

    monkeypatch.setattr(schedules, "vector_lanes", lambda target: 16)  # as on AVX-512, whatever this CPU is
    name, tir = _scheduled_kernel(PadMatmulColumns(lanes=16)(matmul_residual(rng, 312)))
    assert "matmul" in name and "strided_slice" in name and "add" in name
    assert "T.vectorized(T.int64(16))" in tir
    _, unpadded = _scheduled_kernel(matmul_residual(rng, 312))
    assert "T.vectorized(T.int64(16))" not in unpadded and "T.vectorized(T.int64(8))" in unpadded


@pytest.mark.parametrize("columns", [320, 48])
def test_leaves_whole_vectors_alone(rng, columns):
    mod = matmul_residual(rng, columns)
    padder = PadMatmulColumns(lanes=16)
    assert padder(mod).same_as(mod) and padder.stats.matmuls_padded == 0
