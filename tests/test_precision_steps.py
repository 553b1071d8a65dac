import numpy as np
import pytest

from edgecc.errors import EdgeccError
from edgecc.options import CompileOptions
from edgecc.passes import pass_description
from edgecc.passes.precision import precision_passes
from edgecc.passes.precision.calibration import build_on_host, input_specs, load_calibration_file
from edgecc.targets import load_target

from fixtures_precision import dense_module


def Options(precision="fp32", **values):  # noqa: N802 - reads like the options it makes
    return CompileOptions(precision=precision, **values)


def _names(options, target):
    return [pass_description(p) for p in precision_passes(options, target)]


def _target(fp16_math, int8_math, mcpu=None):
    """The host with these capabilities; `mcpu` "x86-64" (plain SSE2) has none of the dot-product
    instructions edgecc tiles for, so the older INT8 paths run (tests/test_pass_*_dense_layers_* and
    test_pass_choose_mixed_precisions cover the dot-product ones)."""
    from dataclasses import replace

    host = load_target("host")
    host = replace(host, capabilities=replace(host.capabilities, fp16_math=fp16_math, int8_math=int8_math))
    return replace(host, tvm_target={"kind": "llvm", "mcpu": mcpu}) if mcpu else host


def test_steps_follow_target_capabilities():
    from edgecc.schedules.matmul_dot import dot_instruction

    assert _names(Options("fp32"), _target(True, True)) == []
    # x86 CPUs compute no FP16 here, whatever the board table says: storage only, and it says so
    assert "no fp16 math" in _names(Options("fp16"), _target(True, False))[0]
    assert "no fp16 math" in _names(Options("fp16"), _target(False, False))[0]
    assert _names(Options("fp16"), load_target("raspberry-pi-5")) == ["cast_matmuls_to_fp16 (fp16 math on fmla .8h)"]
    assert _names(Options("fp16"), load_target("jetson-orin-nano")) == ["cast_matmuls_to_fp16 (fp16 math)"]  # GPU
    assert _names(Options("int8"), _target(False, True, "x86-64")) == ["quantize_dense_weights_int8 (int8 math)"]
    assert "dequantize on load" in _names(Options("int8"), _target(False, False))[0]
    assert _names(Options("bf16"), _target(False, False, "x86-64")) == [
        "cast_dense_layers_bf16 (no bf16 arithmetic on target: compiled as fp32)"
    ]
    int8 = dot_instruction(load_target("host"), "int8")
    if int8 is not None:
        expected = f"quantize_dense_layers_int8 (int8 math on {int8.name})"
        assert _names(Options("int8"), _target(False, True)) == [expected]
    assert _names(Options("mixed"), _target(False, False, "x86-64"))[0].startswith("choose_layer_precisions")
    with pytest.raises(EdgeccError, match="unknown precision 'int4'"):
        Options("int4")


def test_int8_step_calibrates_from_a_file(rng, tmp_path):
    mod, _ = dense_module(rng)
    path = tmp_path / "calib.npz"
    np.savez(path, ids=rng.integers(0, 200, (3, 1, 8)).astype("int64"))
    (step,) = precision_passes(Options("int8", calibration=path), _target(False, True, "x86-64"))
    after = step(mod)
    assert 'out_dtype="int32"' in after.script(show_meta=False)
    ids = rng.integers(0, 200, (1, 8)).astype("int64")
    np.testing.assert_allclose(build_on_host(after)([ids])[0], build_on_host(mod)([ids])[0], atol=0.05)


def test_bad_calibration_files_are_one_line_errors(rng, tmp_path):
    mod, _ = dense_module(rng)
    specs = input_specs(mod)
    with pytest.raises(EdgeccError, match="not found"):
        load_calibration_file(tmp_path / "none.npz", specs)
    np.savez(tmp_path / "wrong.npz", tokens=np.zeros((1, 8)))
    with pytest.raises(EdgeccError, match="lacks input"):
        load_calibration_file(tmp_path / "wrong.npz", specs)
    np.savez(tmp_path / "shape.npz", ids=np.zeros((2, 9), dtype="int64"))
    with pytest.raises(EdgeccError, match="has shape"):
        load_calibration_file(tmp_path / "shape.npz", specs)


def test_mixed_meets_the_budget_and_reports_every_layer(rng):
    mod, _ = dense_module(rng)
    (step,) = precision_passes(Options("mixed", max_accuracy_drop=1e-5), _target(False, False, "x86-64"))
    after = step(mod)
    choices = step.stats.choices
    assert [c["kind"] for c in choices] == ["embedding", "dense", "dense"]
    assert all(c["sensitivity"] >= 0 and c["precision"] in ("int8", "fp32") for c in choices)
    assert any(c["precision"] == "fp32" for c in choices)  # a budget this tight keeps something in FP32
    kept = [c for c in choices if c["precision"] == "fp32"]
    quantized = [c for c in choices if c["precision"] == "int8"]
    if quantized:  # the most sensitive layers are the ones kept
        assert min(c["sensitivity"] for c in kept) >= max(c["sensitivity"] for c in quantized)
    ids = rng.integers(0, 200, (4, 1, 8)).astype("int64")
    from edgecc.passes.precision.sensitivity import output_drop

    drop = output_drop([build_on_host(after)([i])[0] for i in ids], [build_on_host(mod)([i])[0] for i in ids], None)
    assert drop <= 1e-4
    (loose,) = precision_passes(Options("mixed", max_accuracy_drop=0.5), _target(False, False, "x86-64"))
    loose(mod)
    assert all(c["precision"] == "int8" for c in loose.stats.choices)
