import numpy as np
import tvm

from edgecc.passes.precision.calibration import build_on_host
from edgecc.passes.precision.dense_weights import list_dense_layers, weight_key
from edgecc.passes.precision.quantize_dense_weights_int8 import (
    fake_quantize,
    quantize_dense_weights_int8,
    quantize_per_channel,
)

from fixtures_precision import dense_module, reference_dense


def _constant_dtypes(mod):
    from tvm import relax
    from tvm.ir.expr import Constant

    dtypes = []
    relax.analysis.post_order_visit(
        mod["main"],
        lambda e: (
            dtypes.append(e.value.dtype)
            if isinstance(e, Constant) and hasattr(e.value, "numpy") and e.value.numpy().size >= 4096
            else None
        ),
    )
    return sorted(set(dtypes))


def test_per_channel_quantization_round_trips_within_half_a_step(rng):
    weight = rng.standard_normal((64, 16)).astype("float32") * np.linspace(0.01, 5, 16, dtype="float32")
    values, scale = quantize_per_channel(weight, axis=1)
    assert values.dtype == np.int8 and scale.shape == (16,)
    assert np.abs(values).max() == 127
    assert np.all(np.abs(fake_quantize(weight, 1) - weight) <= scale / 2 + 1e-7)


def test_weights_become_int8_and_outputs_match_dequantized_reference(rng):
    mod, weights = dense_module(rng)
    assert _constant_dtypes(mod) == ["float32"]
    after = quantize_dense_weights_int8(mod)
    assert _constant_dtypes(after) == ["int8"]  # every large constant is stored as int8
    ids = rng.integers(0, 200, (1, 8)).astype("int64")
    out = build_on_host(after)([ids])[0]
    axis = {"table": 0, "w1": 1, "w2": 1}
    expected = reference_dense(ids, weights, lambda name, w: fake_quantize(w, axis[name]))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    fp32 = reference_dense(ids, weights)
    assert np.abs(out - fp32).max() < 0.05 * np.abs(fp32).max()


def test_only_selected_layers_are_quantized(rng):
    mod, weights = dense_module(rng)
    layers = list_dense_layers(mod)
    assert [layer["kind"] for layer in layers] == ["embedding", "dense", "dense"]
    after = quantize_dense_weights_int8(mod, keys={weight_key(weights["w1"])})
    assert _constant_dtypes(after) == ["float32", "int8"]
    ids = rng.integers(0, 200, (1, 8)).astype("int64")
    expected = reference_dense(ids, weights, lambda n, w: fake_quantize(w, 1) if n == "w1" else w)
    np.testing.assert_allclose(build_on_host(after)([ids])[0], expected, rtol=1e-4, atol=1e-5)


def test_int8_math_uses_int32_accumulation_and_stays_close(rng):
    mod, weights = dense_module(rng)
    keys = {weight_key(weights["w1"]): 4.0 / 127, weight_key(weights["w2"]): 1.0 / 127}
    after = quantize_dense_weights_int8(mod, int8_math=True, activation_scales=keys)
    text = after.script(show_meta=False)
    assert 'out_dtype="int32"' in text and text.count('dtype="int8"') >= 3
    ids = rng.integers(0, 200, (1, 8)).astype("int64")
    fp32 = reference_dense(ids, weights)
    out = build_on_host(after)([ids])[0]
    assert np.abs(out - fp32).max() < 0.05 * np.abs(fp32).max()


def test_exported_library_really_shrinks(rng, tmp_path):
    from tvm import relax

    mod, _ = dense_module(rng, hidden=256, out=512, vocab=2000)
    sizes = {}
    for name, module in (("fp32", mod), ("int8", quantize_dense_weights_int8(mod))):
        target = tvm.target.Target({"kind": "llvm"})
        with target:
            lowered = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.FoldConstant()])(module)
        path = tmp_path / f"{name}.so"
        relax.build(lowered, target).export_library(str(path))
        sizes[name] = path.stat().st_size
    weight_bytes = 4 * (2000 * 256 + 2 * 256 * 512)
    assert sizes["fp32"] - sizes["int8"] > 0.7 * weight_bytes  # 3/4 of the weight bytes are gone
