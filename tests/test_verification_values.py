"""Verification treats NaN and inf as values: NaN against NaN and an infinity against the same infinity
agree; either against anything else is a failure, however small the other outputs' errors are."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgecc.measure.accuracy import cosine_rows
from edgecc.measure.verification import output_errors, verdict, worst_error

from fixtures_hostile import assert_refused, invoke

nan, inf = float("nan"), float("inf")


@pytest.mark.fast
def test_a_nan_reference_against_a_number_fails_even_beside_an_exact_output():
    """max([0.0, nan]) is 0.0: the NaN output used to vanish behind the exact one."""
    rows = output_errors(
        {"exact": np.array([1.0, 2.0]), "y": np.array([0.0, 1.0])},
        {"exact": np.array([1.0, 2.0]), "y": np.array([nan, 1.0])},
    )
    status, reason = verdict(rows, 1e-4)
    assert status == "failed", reason
    assert "output 'y'" in reason and "NaN or an infinity" in reason
    assert rows[1]["max_rel_error"] == inf and rows[1]["non_finite_mismatched"] == 1


@pytest.mark.fast
@pytest.mark.parametrize(
    "got, ref",
    [
        ([nan, 1.0], [nan, 1.0]),
        ([inf, 1.0], [inf, 1.0]),
        ([-inf, nan, 2.0], [-inf, nan, 2.0]),
    ],
)
def test_identical_outputs_with_nan_or_inf_pass(got, ref):
    rows = output_errors({"y": np.array(got)}, {"y": np.array(ref)})
    status, reason = verdict(rows, 1e-4)
    assert status == "passed", reason
    assert rows[0]["max_rel_error"] == 0.0 and rows[0]["non_finite_mismatched"] == 0


@pytest.mark.fast
@pytest.mark.parametrize(
    "got, ref",
    [
        ([1.0, 1.0], [nan, 1.0]),
        ([nan, 1.0], [1.0, 1.0]),
        ([inf, 1.0], [-inf, 1.0]),
        ([inf, 1.0], [nan, 1.0]),
        ([1e308, 1.0], [inf, 1.0]),
        ([-inf, 1.0], [0.0, 1.0]),
    ],
)
def test_a_nan_or_inf_on_one_side_only_fails(got, ref):
    rows = output_errors({"y": np.array(got)}, {"y": np.array(ref)})
    assert verdict(rows, 1e-4)[0] == "failed"
    assert verdict(rows, 1e9)[0] == "failed"  # no tolerance lets a NaN pass for a number


@pytest.mark.fast
def test_finite_elements_beside_matching_nans_are_still_compared():
    rows = output_errors({"y": np.array([nan, 1.0, 2.1])}, {"y": np.array([nan, 1.0, 2.0])})
    assert rows[0]["max_abs_error"] == pytest.approx(0.1)
    assert verdict(rows, 1e-4)[0] == "failed"


@pytest.mark.fast
def test_worst_error_never_drops_a_nan():
    assert max([0.0, nan]) == 0.0  # what it guards against
    assert worst_error([0.0, nan]) == inf


@pytest.mark.fast
def test_cosine_agreement_treats_nan_and_inf_as_values():
    same = cosine_rows(np.array([[nan, 1.0, -inf, 2.0]]), np.array([[nan, 1.0, -inf, 2.0]]))
    assert same[0] == pytest.approx(1.0)
    differs = cosine_rows(np.array([[0.0, 1.0, 2.0]]), np.array([[nan, 1.0, 2.0]]))
    assert differs[0] == -1.0
    assert not math.isnan(differs[0])


def _unary_model(path, op: str, outputs: int = 1):
    """y_i = op(x_i) for `outputs` inputs of 8 floats."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inputs, results = [], [], []
    for i in range(outputs):
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1, 8]))
        results.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, 8]))
        nodes.append(helper.make_node(op, [f"x{i}"], [f"y{i}"]))
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, results), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_model_that_computes_nan_and_inf_passes_end_to_end(tmp_path):
    """Log of -1 and 0 is NaN and -inf in ONNX Runtime and in the artifact alike: that is agreement."""
    model = _unary_model(tmp_path / "log.onnx", "Log")
    np.savez(tmp_path / "in.npz", x0=np.array([[-1, 0, 1, 2, 3, 4, 5, 6]], np.float32))
    result = invoke("compile", model, "-o", tmp_path / "out", "--inputs", tmp_path / "in.npz", "--no-measure", "-q")
    assert result.exit_code == 0, result.stderr
    verification = json.loads((tmp_path / "out" / "report.json").read_text())["verification"]
    assert verification["status"] == "passed", verification


def test_a_nan_the_artifact_turns_into_a_number_fails_end_to_end(tmp_path):
    """Relu(NaN) is NaN in ONNX Runtime; if the artifact says otherwise, the exact output beside it must
    not hide that (max([0.0, nan]) made it "passed: worst relative error 0")."""
    import onnxruntime as ort

    model = _unary_model(tmp_path / "relu.onnx", "Relu", outputs=2)
    inputs = {
        "x0": np.array([[-1, 0, 1, 2, 3, 4, 5, 6]], np.float32),
        "x1": np.array([[nan, -1, 1, 2, inf, -inf, 5, 6]], np.float32),
    }
    np.savez(tmp_path / "in.npz", **inputs)
    result = invoke("compile", model, "-o", tmp_path / "out", "--inputs", tmp_path / "in.npz", "--no-measure", "-q")
    reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["y1"], inputs)[0]
    assert np.isnan(reference[0, 0])
    if result.exit_code == 0:  # this TVM keeps Relu's NaN: then the artifact agrees, and passing is right
        from edgecc.api import run

        assert np.isnan(run(tmp_path / "out", inputs)["y1"][0, 0])
        return
    assert_refused(result.exit_code, result.stderr, "verification failed", "output 'y1'", "NaN or an infinity")
    assert not (tmp_path / "out").exists()
