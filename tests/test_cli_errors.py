"""Bad input gets one clear line and a non-zero exit, never a traceback or a half-written folder."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgecc.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def assert_error(result, *fragments):
    assert result.exit_code != 0
    assert "edgecc: error:" in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_missing_model_file(tmp_path):
    assert_error(invoke("compile", tmp_path / "nope.onnx", "-o", tmp_path / "o"), "not found")


def test_corrupt_and_truncated_and_non_onnx_files(tmp_path, held_out_bert_onnx):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.onnx"
    data = held_out_bert_onnx.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    for path in (corrupt, truncated, text):
        result = invoke("compile", path, "-o", tmp_path / "o")
        assert_error(result, str(path))
        assert not (tmp_path / "o").exists()


def test_unsupported_ops_are_all_named_with_a_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Celu", ["x"], ["y"], name="celu_1"),
        helper.make_node("Relu", ["y"], ["z"], name="relu_1"),
        helper.make_node("Det", ["z"], ["w"], name="det_1"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "unsupported.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert_error(invoke("compile", path, "-o", tmp_path / "o"), "Celu (node 'celu_1')", "Det (node 'det_1')")


def test_wrong_input_name_shape_dtype(tmp_path, held_out_bert_onnx):
    assert_error(
        invoke("compile", held_out_bert_onnx, "--input", "tokens:1x8:int64", "-o", tmp_path / "o"),
        "no input 'tokens'",
        "input_ids",
    )
    assert_error(
        invoke("compile", held_out_bert_onnx, "--input", "input_ids:1x8:float32", "-o", tmp_path / "o"), "dtype int64"
    )
    assert_error(invoke("compile", held_out_bert_onnx, "--input", "input_ids:8:int64", "-o", tmp_path / "o"), "rank 2")
    assert_error(
        invoke("compile", held_out_bert_onnx, "--input", "input_ids:1xeight", "-o", tmp_path / "o"), "bad shape"
    )


def test_run_rejects_inputs_of_the_wrong_shape(tmp_path):
    out = tmp_path / "tiny"
    assert invoke("compile", "bert-tiny-test", "--seq-len", "8", "-o", out, "--no-measure").exit_code == 0
    np.savez(tmp_path / "bad.npz", input_ids=np.zeros((1, 9), np.int64), attention_mask=np.ones((1, 9), np.int64))
    assert_error(invoke("run", out, "--inputs", tmp_path / "bad.npz"), "shape 1x9", "1x8")
    np.savez(tmp_path / "missing.npz", input_ids=np.zeros((1, 8), np.int64))
    assert_error(invoke("run", out, "--inputs", tmp_path / "missing.npz"), "missing ['attention_mask']")
    assert_error(invoke("run", tmp_path / "not-an-artifact"), "is not an edgecc artifact: no such folder")


def test_unknown_builtin_and_target_list_the_known_ones(tmp_path):
    assert_error(invoke("compile", "gpt-17", "-o", tmp_path / "o"), "unknown built-in model 'gpt-17'", "tinybert-4")
    assert_error(
        invoke("compile", "bert-tiny-test", "--target", "pdp-11", "-o", tmp_path / "o"),
        "unknown target 'pdp-11'",
        "raspberry-pi-5",
        "jetson-orin",
    )


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_error(invoke("compile", "bert-tiny-test", "--seq-len", "8", "-o", blocker / "out"), "cannot write")
    assert_error(invoke("compile", "bert-tiny-test", "--seq-len", "8", "-o", blocker), "cannot write")


def test_failed_verification_leaves_nothing_behind(tmp_path):
    out = tmp_path / "o"
    result = invoke("compile", "bert-tiny-test", "--seq-len", "8", "-o", out, "--tolerance", "0", "--no-measure")
    assert_error(result, "verification failed", "exceeds tolerance 0")
    assert result.exit_code == 3
    assert list(tmp_path.iterdir()) == []


def test_failed_recompile_keeps_the_previous_artifact(tmp_path):
    out = tmp_path / "o"
    assert invoke("compile", "bert-tiny-test", "--seq-len", "8", "-o", out, "--no-measure").exit_code == 0
    before = (out / "manifest.json").read_text()
    assert_error(
        invoke("compile", "bert-tiny-test", "--seq-len", "8", "-o", out, "--tolerance", "0", "--no-measure"),
        "verification failed",
    )
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["compile", "bert-tiny-test", "--budget", "soon"], "bad duration"),
        (["compile", "bert-tiny-test", "--inputs", "/nonexistent.npz", "--seq-len", "8"], "inputs file not found"),
    ],
)
def test_bad_option_values(args, fragment, tmp_path):
    assert_error(invoke(*args, "-o", tmp_path / "o"), fragment)


def test_sequence_longer_than_the_model_reads_is_one_clear_line(tmp_path):
    out = tmp_path / "o"
    assert_error(
        invoke("compile", "bert-tiny-test", "--seq-len", "513", "-o", out), "at most 512 tokens", "--seq-len 513"
    )
    assert not out.exists()


def test_an_exception_without_a_message_still_gives_one_line():
    """`str(exc).splitlines()[0]` of an empty message raised IndexError (a traceback) where a clear
    line was due; error_line names the exception's type instead, and can take TVM's last line."""
    from edgecc.errors import error_line

    assert error_line(ValueError()) == "ValueError"
    assert error_line(RuntimeError("Traceback:\n  frame\nTVMError: the cause"), last=True) == "TVMError: the cause"
    assert error_line(OSError("first\nsecond")) == "first" and len(error_line(OSError("x" * 999))) == 300
