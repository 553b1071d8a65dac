"""Bad numbers and odd models at the boundary: every option of every command is checked up front (one
line, before any work), FP16/FP64 models are verified against a tolerance of their own type, and
unsupported types, opsets, sparse windows and target files say what is wrong."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fixtures_hostile import assert_refused, invoke, snapshot, staging_left


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["compile", "{model}", "--seq-len", "0"], "--seq-len must be a whole number >= 1"),
        (["compile", "{model}", "--seq-len", "-5"], "--seq-len must be a whole number >= 1"),
        (["compile", "{model}", "--seq-len", "99999999999999"], "is too large"),
        (["compile", "{model}", "--batch", "0"], "--batch must be a whole number >= 1"),
        (["compile", "{model}", "--tolerance", "-1"], "--tolerance must be a finite number >= 0"),
        (["compile", "{model}", "--tolerance", "nan"], "--tolerance must be a finite number >= 0"),
        (["compile", "{model}", "--max-accuracy-drop", "-1"], "--max-accuracy-drop must be a finite number >= 0"),
        (["compile", "{model}", "--trials", "-5"], "--trials must be a whole number >= 1"),
        (["compile", "{model}", "--min-seconds", "-1"], "--min-seconds must be a finite number >= 0"),
        (["compile", "{model}", "--min-seconds", "inf"], "--min-seconds must be a finite number >= 0"),
        (["compile", "{model}", "--seed", "-1"], "--seed must be a whole number >= 0"),
        (["compile", "{model}", "--rpc-timeout", "-3"], "'--rpc-timeout': '-3' must be > 0"),
        (["compile", "{model}", "--budget", "0"], "bad duration '0'"),
        (["compile", "{model}", "--budget", "-5m"], "bad duration '-5m'"),
        (["compile", "{model}", "--batch", "two"], "'two' is not a valid integer"),
        (["compile", "{model}", "--precision", "fp64"], "'fp64' is not one of"),
        (["compile", "{model}", "--input", "input_ids:0x8:int64"], "dimensions must be positive"),
        (["compile", "{model}", "--sparse-attention", "window=-1"], "window must be positive"),
        (["compile", "{model}", "--preset", "fastest"], "unknown preset 'fastest'"),
        (["tune", "{model}", "--trials", "-5"], "--trials must be a whole number >= 1"),
        (["tune", "{model}", "--trials", "0"], "--trials must be a whole number >= 1"),
        (["bench", "{artifact}", "--min-seconds", "-1"], "'-1' must be >= 0"),
        (["bench", "{artifact}", "--min-seconds", "nan"], "'nan' is not a finite number"),
        (["bench", "{artifact}", "--rpc-timeout", "-1", "--rpc", "127.0.0.1:1"], "'-1' must be > 0"),
        (["run", "{artifact}", "--rpc-timeout", "nan", "--rpc", "127.0.0.1:1"], "'nan' is not a finite number"),
        (["run", "{artifact}", "--rpc", "nohostport"], "bad address 'nohostport'"),
        (["board", "emulate", "--port", "0"], "0 is not in the range 1<=x<=65535"),
        (["board", "emulate", "--port", "70000"], "70000 is not in the range"),
        (["tracker", "--port", "-1"], "-1 is not in the range"),
        (["compile"], "Missing argument 'MODEL'"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_bad_values_are_one_line_before_any_work(tiny_model, tiny_artifact, tmp_path, args, fragment):
    before = snapshot(tiny_artifact)
    args = [a.format(model=tiny_model, artifact=tiny_artifact) for a in args]
    if args and args[0] in ("compile", "tune"):
        args += ["-o", str(tmp_path / "o"), "-q"]
    started = time.monotonic()
    result = invoke(*args)
    assert_refused(result.exit_code, result.stderr, fragment)
    assert time.monotonic() - started < 15
    assert not (tmp_path / "o").exists() and staging_left(tmp_path) == [] and snapshot(tiny_artifact) == before


def _small_model(path: Path, elem_type, np_dtype, opset: int = 17, input_type=None) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np_dtype), "W")
    bias = numpy_helper.from_array(rng.standard_normal((32,)).astype(np_dtype), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Tanh", ["z"], ["t"]),
        helper.make_node("Softmax", ["t"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", input_type or elem_type, [4, 64])],
        [helper.make_tensor_value_info("y", elem_type, [4, 32])],
        initializer=[weight, bias],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def test_an_fp16_model_verifies_against_an_fp16_tolerance_by_default(tmp_path):
    from onnx import TensorProto

    model = _small_model(tmp_path / "fp16.onnx", TensorProto.FLOAT16, np.float16)
    result = invoke("compile", model, "-o", tmp_path / "o", "--no-measure", "-q")
    assert result.exit_code == 0, result.stderr
    assert "tolerance 0.02" in result.stdout  # FP16 arithmetic differs from ONNX Runtime's by ~2e-3 relative


def test_an_fp64_model_compiles_and_verifies_to_fp64_accuracy(tmp_path):
    from onnx import TensorProto

    model = _small_model(tmp_path / "fp64.onnx", TensorProto.DOUBLE, np.float64)
    result = invoke("compile", model, "-o", tmp_path / "o", "--no-measure", "-q")
    assert result.exit_code == 0, result.stderr
    assert "tolerance 1e-08" in result.stdout


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: _small_model(p, 1, np.float32, opset=30), "uses ONNX opset 30, newer than this installation knows"),
        (lambda p: _small_model(p, 1, np.float32, input_type=4), "input 'x' has element type UINT16"),
    ],
)
def test_unsupported_opsets_and_types_are_one_line_naming_the_cause(tmp_path, make, fragment):
    model = make(tmp_path / "m.onnx")
    result = invoke("compile", model, "-o", tmp_path / "o", "-q")
    assert_refused(result.exit_code, result.stderr, fragment, code=2)
    assert not (tmp_path / "o").exists()


def test_a_sparse_window_wider_than_the_sequence_is_refused(tiny_model, tmp_path):
    result = invoke("compile", tiny_model, "--sparse-attention", "window=512", "-o", tmp_path / "o", "-q")
    assert_refused(
        result.exit_code,
        result.stderr,
        "rewrote none of the model's 2 attention(s)",
        "the sequence is only 8 tokens long",
        code=2,
    )


@pytest.mark.parametrize("name", ["../../escaped", "a/b", ".hidden", "..", "x" * 101])
def test_a_target_name_cannot_become_a_path(tmp_path, name):
    from edgecc.targets import TARGETS_DIR

    text = (TARGETS_DIR / "raspberry-pi-5.toml").read_text()
    target = tmp_path / "mine.toml"
    target.write_text(
        "\n".join(f'name = "{name}"' if line.startswith("name =") else line for line in text.splitlines()) + "\n"
    )
    result = invoke("targets", target)
    assert_refused(result.exit_code, result.stderr, f"{target}: field 'name' must be letters, digits", code=2)
    result = invoke(
        "tune", "bert-tiny-test", "--target", target, "--tuning-logs", tmp_path / "logs", "-o", tmp_path / "o", "-q"
    )
    assert_refused(result.exit_code, result.stderr, "field 'name'", code=2)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "logs").exists()
