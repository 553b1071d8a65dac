from dataclasses import dataclass, field

import numpy as np
import pytest

from edgecc.calibration import build_on_host, load_calibration_file, input_specs
from edgecc.errors import EdgeccError
from edgecc.passes.precision_steps import precision_steps
from edgecc.targets import load_target
from fixtures_precision import dense_module


@dataclass
class Options:
    precision: str = "fp32"
    calibration: object = None
    max_accuracy_drop: float | None = None
    extra: dict = field(default_factory=dict)


def _target(fp16_math, int8_math):
    from dataclasses import replace

    host = load_target("host")
    return replace(host, capabilities=replace(host.capabilities, fp16_math=fp16_math, int8_math=int8_math))


def test_steps_follow_target_capabilities():
    assert precision_steps(Options("fp32"), _target(True, True)) == []
    assert "cast matmuls" in precision_steps(Options("fp16"), _target(True, False))[0][0]
    assert "no fp16 math" in precision_steps(Options("fp16"), _target(False, False))[0][0]
    assert "int8 math" in precision_steps(Options("int8"), _target(False, True))[0][0]
    assert "dequantize on load" in precision_steps(Options("int8"), _target(False, False))[0][0]
    with pytest.raises(EdgeccError, match="unknown precision 'int4'"):
        precision_steps(Options("int4"), _target(True, True))


def test_int8_step_calibrates_from_a_file(rng, tmp_path):
    mod, _ = dense_module(rng)
    path = tmp_path / "calib.npz"
    np.savez(path, ids=rng.integers(0, 200, (3, 1, 8)).astype("int64"))
    (_, step), = precision_steps(Options("int8", calibration=path), _target(False, True))
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
    options = Options("mixed", max_accuracy_drop=1e-5)
    (_, step), = precision_steps(options, _target(False, False))
    after = step(mod)
    choices = options.extra["precision_choices"]
    assert [c["kind"] for c in choices] == ["embedding", "dense", "dense"]
    assert all(c["sensitivity"] >= 0 and c["precision"] in ("int8", "fp32") for c in choices)
    assert any(c["precision"] == "fp32" for c in choices)  # a budget this tight keeps something in FP32
    kept = [c for c in choices if c["precision"] == "fp32"]
    quantized = [c for c in choices if c["precision"] == "int8"]
    if quantized:  # the most sensitive layers are the ones kept
        assert min(c["sensitivity"] for c in kept) >= max(c["sensitivity"] for c in quantized)
    ids = rng.integers(0, 200, (4, 1, 8)).astype("int64")
    from edgecc.sensitivity import output_drop

    drop = output_drop([build_on_host(after)([i])[0] for i in ids], [build_on_host(mod)([i])[0] for i in ids], None)
    assert drop <= 1e-4
    loose = Options("mixed", max_accuracy_drop=0.5)
    precision_steps(loose, _target(False, False))[0][1](mod)
    assert all(c["precision"] == "int8" for c in loose.extra["precision_choices"])
