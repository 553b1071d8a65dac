"""INT8 dense layers (edgecc/passes/quantize_dense_layers_int8.py) built through edgecc's own lowering
and schedules for this machine, against NumPy FP32."""

import numpy as np
import pytest
import tvm
from tvm import relax

from edgecc.options import CompileOptions
from edgecc.passes import pass_description
from edgecc.passes.precision import precision_passes
from edgecc.passes.precision.quantize_dense_layers_int8 import QuantizeDenseLayersInt8, quantize_dense_layers_int8
from edgecc.schedules import vector_lanes
from edgecc.schedules.matmul_dot import dot_instruction
from edgecc.schedules.weight_packing import PACKED_ATTR
from edgecc.targets import load_target

from fixtures_precision import build_for_host as _build
from fixtures_precision import cosine as _cosine
from fixtures_precision import dense_module, reference_dense

HOST = load_target("host")
INS = dot_instruction(HOST)
pytestmark = pytest.mark.skipif(INS is None, reason="this CPU has no INT8 dot-product instruction edgecc uses")


def test_every_dense_layer_runs_int8_on_the_instruction_and_matches_fp32(rng):
    mod, weights = dense_module(rng, tokens=16, hidden=64, out=128)
    after, stats = quantize_dense_layers_int8(mod, INS, vector_lanes(HOST))
    assert stats.int8_layers == ("dense_1", "dense_2") and not stats.fallbacks and stats.quantized_inputs == 2
    scheduled, run = _build(after)
    int8_kernels = [
        f
        for _, f in scheduled.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc) and f.attrs and PACKED_ATTR in f.attrs and len(f.attrs[PACKED_ATTR][0]) == 4
    ]
    assert len(int8_kernels) == 2  # both GEMMs got the dot-product rule and the [N/T, K/4, T, 4] weights
    ids = rng.integers(0, 200, (1, 16)).astype("int64")
    expected = reference_dense(ids, weights)
    actual = run(ids)
    assert _cosine(actual, expected) > 0.9995
    np.testing.assert_allclose(actual, expected, atol=0.02 * np.abs(expected).max())


def _shared_input_shape(lanes):
    """(K, widths): two layers of whole vectors and one half a vector short, each weight large enough
    to be quantized: K 128 and 48, 48, 40 columns with 16 lanes, K 256 and 24, 24, 20 with 8."""
    return 2048 // lanes, (3 * lanes, 3 * lanes, 2 * lanes + lanes // 2)


def _shared_input_module(rng, k, n):
    """Three layers reading one input (like Q, K, V): y = sum of x @ W_i, then the third layer's columns."""
    x = relax.Var("x", relax.TensorType((8, k), "float32"))
    ws = [(rng.standard_normal((k, width)) * 0.1).astype("float32") for width in n]
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            outs = [bb.emit(relax.op.matmul(x, relax.const(w))) for w in ws]
            first = bb.emit(relax.op.add(outs[0], outs[1]))
            y = bb.emit_output(relax.op.concat([first, outs[2]], axis=1))
        bb.emit_func_output(y)
    return bb.get(), ws


def test_an_input_read_by_several_layers_is_quantized_once_and_bad_shapes_stay_fp32(rng):
    k, widths = _shared_input_shape(INS.lanes)
    mod, ws = _shared_input_module(rng, k, widths)
    after, stats = quantize_dense_layers_int8(mod, INS, vector_lanes(HOST))
    assert stats.quantized_inputs == 1 and len(stats.int8_layers) == 2
    (fallback,) = stats.fallbacks  # the third layer's N is half a vector short of whole vectors
    assert fallback.shape == (k, widths[2]) and "not a multiple" in fallback.reason
    assert fallback.layer in stats.summary() and "kept FP32" in stats.summary()
    x = rng.standard_normal((8, k)).astype("float32")
    expected = np.concatenate([x @ ws[0] + x @ ws[1], x @ ws[2]], axis=1)
    _, run = _build(after)
    actual = run(x)
    first = widths[0]
    np.testing.assert_allclose(actual[:, first:], expected[:, first:], rtol=1e-5, atol=1e-5)  # the FP32 layer
    assert _cosine(actual[:, :first], expected[:, :first]) > 0.999


def test_step_keeps_int8_only_where_it_timed_faster_and_says_why_otherwise(rng):
    mod, _ = dense_module(rng, tokens=16, hidden=64, out=128)
    step = QuantizeDenseLayersInt8(INS, vector_lanes(HOST), HOST, timed=True)
    after = step(mod)
    stats = step.stats
    assert stats.timing.startswith("each dense shape timed")
    assert len(stats.timings) == 2 and all(t["fp32_us"] > 0 and t["int8_us"] > 0 for t in stats.timings)
    slower = {name for t in stats.timings if t["kept"] == "fp32" for name in t["layers"]}
    assert slower == {f.layer for f in stats.fallbacks}
    assert all("timed slower than FP32" in f.reason for f in stats.fallbacks)
    assert set(stats.int8_layers) | slower == {"dense_1", "dense_2"}
    text = after.script(show_meta=False)
    assert text.count('out_dtype="int32"') == len(stats.int8_layers)
    assert "R.take" in text and '"int8"' in text  # the embedding table is stored as INT8 either way


def test_step_on_a_board_that_cannot_run_here_keeps_int8_untimed(rng):
    pi5 = load_target("raspberry-pi-5")
    mod, _ = dense_module(rng, tokens=16, hidden=64, out=128)
    (step,) = precision_passes(CompileOptions(precision="int8", target="raspberry-pi-5"), pi5)
    step(mod)
    assert step.stats.instruction == "sdot (dotprod)" and len(step.stats.int8_layers) == 2
    assert step.stats.timing.startswith("not timed") and not step.stats.timings


def test_calibrated_static_scales_replace_the_row_kernel(rng, tmp_path):
    mod, weights = dense_module(rng, tokens=16, hidden=64, out=128)
    from edgecc.passes.precision.calibration import activation_scales, calibration_samples

    np.savez(tmp_path / "calib.npz", ids=rng.integers(0, 200, (4, 1, 16)).astype("int64"))
    scales = activation_scales(mod, calibration_samples(mod, tmp_path / "calib.npz"))
    after, stats = quantize_dense_layers_int8(mod, INS, vector_lanes(HOST), static_scales=scales)
    assert stats.activations.startswith("static") and stats.quantized_inputs == len(stats.int8_layers) - len(scales)
    ids = rng.integers(0, 200, (1, 16)).astype("int64")
    _, run = _build(after)
    assert _cosine(run(ids), reference_dense(ids, weights)) > 0.999


def test_static_scales_keep_every_code_of_the_calibrated_range(rng):
    """Inputs reaching the calibrated peak on both signs are represented, not clipped: on vpmaddubsw a
    0..127 code range around 64 held only half of the +-127 steps the scale was made for."""
    from edgecc.passes.precision.dense_weights import weight_key

    x = rng.standard_normal((8, 64)).astype("float32")
    peak = float(np.abs(x).max())
    x[0, :8], x[1, :8] = peak, -peak
    w = (rng.standard_normal((64, 8 * INS.lanes)) * 0.1).astype("float32")
    var = relax.Var("x", relax.TensorType(x.shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [var]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.matmul(var, relax.const(w)))
        bb.emit_func_output(y)
    after, stats = quantize_dense_layers_int8(
        bb.get(), INS, vector_lanes(HOST), static_scales={weight_key(w): peak / 127}
    )
    assert stats.int8_layers and stats.quantized_inputs == 0  # the static scale, no row kernel
    _, run = _build(after)
    expected = x @ w
    np.testing.assert_allclose(run(x), expected, atol=0.03 * np.abs(expected).max())


def test_precision_pass_names_the_instruction_and_falls_back_without_one():
    from dataclasses import replace

    (step,) = precision_passes(CompileOptions(precision="int8"), HOST)
    assert pass_description(step) == f"quantize_dense_layers_int8 (int8 math on {INS.name})"
    pi4 = load_target("raspberry-pi-4")  # Cortex-A72: no dot product
    pi4 = replace(pi4, capabilities=replace(pi4.capabilities, int8_math=True))
    (step,) = precision_passes(CompileOptions(precision="int8", target="raspberry-pi-4"), pi4)
    assert pass_description(step) == "quantize_dense_weights_int8 (int8 math)"


def test_a_decision_timed_on_a_loaded_machine_says_so(monkeypatch):
    """Under contention INT8 layers (two kernel launches) time slower than FP32; the kept-FP32 line says
    what the timing was measured under instead of passing it off as a property of the model."""
    import os
    from types import SimpleNamespace

    from edgecc.passes.precision import low_precision_timing as timing
    from edgecc.passes.precision.quantize_dense_layers_int8 import fallback_summary

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert timing._load_caveat("int8") == ""
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 5.0, 3.0))
    caveat = timing._load_caveat("int8")
    assert "load 7.0 on 2 cores" in caveat and "INT8 on a quiet one" in caveat
    fallback = SimpleNamespace(layer="dense_1", reason="INT8 kernel timed slower than FP32 here (3.0 vs 1.5 us)")
    line = fallback_summary("INT8 dense layers: 0 on vpdpbusd", [fallback], "timed here" + caveat)
    assert line.endswith(caveat.strip()) and "1 kept FP32 (dense_1:" in line
    assert fallback_summary("INT8 dense layers: 3", [], "timed here" + caveat) == "INT8 dense layers: 3"
