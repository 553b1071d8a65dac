import numpy as np

from edgecc.passes.precision.calibration import build_on_host
from edgecc.passes.precision.cast_matmuls_to_fp16 import CastMatmulsToFp16

from fixtures_precision import dense_module, reference_dense


def test_fp16_math_casts_operands_accumulates_fp32_and_keeps_softmax_fp32(rng):
    mod, weights = dense_module(rng)
    after = CastMatmulsToFp16(fp16_math=True)(mod)
    text = after.script(show_meta=False)
    assert text.count('out_dtype="float32"') == 2  # both matmuls accumulate in FP32
    assert 'R.astype(lv1, dtype="float16")' in text or 'dtype="float16")' in text
    softmax_line = next(line for line in text.splitlines() if "R.nn.softmax" in line)
    assert 'dtype="float32"' in softmax_line
    ids = rng.integers(0, 200, (1, 8)).astype("int64")
    half = reference_dense(ids, weights, lambda name, w: w.astype(np.float16).astype(np.float32))
    out = build_on_host(after)([ids])[0]
    np.testing.assert_allclose(out, half, rtol=2e-2, atol=2e-3)
    assert np.abs(out - reference_dense(ids, weights)).max() < 1e-2


def test_storage_only_fp16_keeps_activations_fp32(rng):
    mod, weights = dense_module(rng)
    after = CastMatmulsToFp16(fp16_math=False)(mod)
    text = after.script(show_meta=False)
    casts = [line for line in text.splitlines() if "R.astype(" in line]
    assert casts and all('dtype="float32")' in line for line in casts)  # only FP16 tables widened, no rounding
    ids = rng.integers(0, 200, (1, 8)).astype("int64")
    expected = reference_dense(ids, weights, lambda name, w: w.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(build_on_host(after)([ids])[0], expected, rtol=1e-4, atol=1e-5)
