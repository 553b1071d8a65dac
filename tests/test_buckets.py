"""Dynamic shapes: one artifact of the held-out BERT (an ONNX file with a dynamic sequence axis)
compiled once, run at many lengths, equal to ONNX Runtime run unpadded at each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_buckets import BUCKETS, VOCAB, quiet, tokens

import edgecc
from edgecc.cli import main
from edgecc.errors import EdgeccError, InputSpecError, ModelError

from fixtures_models import onnxruntime_outputs


def relative_error(got, want) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def test_one_artifact_runs_at_every_length_and_matches_onnxruntime_unpadded(bucketed_bert, held_out_bert_onnx):
    result, folder = bucketed_bert
    tolerance = result.report["verification"]["tolerance"]
    for length in (1, 5, 8, 9, 17, 24):  # inside, at the edge of, and just past each bucket
        inputs = tokens(length)
        got = edgecc.run(folder, inputs)["last_hidden_state"]
        want = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
        assert got.shape == want.shape == (1, length, 48)
        assert relative_error(got, want) <= tolerance, length


def test_the_library_holds_a_static_main_per_bucket_sharing_one_copy_of_the_weights(bucketed_bert, tmp_path):
    result, folder = bucketed_bert
    buckets = result.report["buckets"]
    assert buckets["sequence"] == list(BUCKETS)
    assert [b["function"] for b in buckets["buckets"]] == ["main_s8", "main_s24"]
    # every bucket's constants together are about twice one bucket's; the library stores them once
    assert buckets["constant_bytes"] > 1.8 * buckets["stored_constant_bytes"]
    static = edgecc.compile(
        result.context.source.onnx_path, "host", tmp_path / "static", seq_len=24, verify=False, measure=False, log=quiet
    )
    growth = result.report["artifact"]["library_bytes"] - static.report["artifact"]["library_bytes"]
    # the second bucket adds its code (and the pad / cut kernels), less than a copy of its constants would
    assert 0 < growth < buckets["constant_bytes"] - buckets["stored_constant_bytes"]
    import tvm

    vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(folder / "model.so")), tvm.cpu())
    small = tokens(8)
    direct = vm["main_s8"](*(tvm.runtime.tensor(small[k]) for k in ("input_ids", "attention_mask"))).numpy()
    np.testing.assert_allclose(direct, edgecc.run(folder, small)["last_hidden_state"], rtol=0, atol=0)


def test_manifest_and_report_list_the_buckets_their_latency_and_the_lengths_verified(bucketed_bert):
    result, folder = bucketed_bert
    manifest = json.loads((folder / "manifest.json").read_text())
    ids = next(e for e in manifest["inputs"] if e["name"] == "input_ids")
    assert ids["shape"] == [1, 24] and ids["dynamic_axes"] == {"1": "sequence"} and ids["valid_range"] == [0, VOCAB]
    assert manifest["outputs"][0]["dynamic_axes"] == {"1": "sequence"}
    assert [b["seq_len"] for b in manifest["buckets"]["buckets"]] == list(BUCKETS)
    assert all(b["median_ms"] > 0 for b in manifest["buckets"]["buckets"])
    report = result.report["buckets"]
    for bucket in report["buckets"]:
        assert bucket["latency"]["edgecc"]["median_ms"] > 0 and bucket["latency"]["onnxruntime"]["median_ms"] > 0
        assert bucket["passes"]["fuse_attention"]["attentions_fused"] == 3  # the same passes at every shape
        assert bucket["kernels"] >= 10
    lengths = [row["seq_len"] for row in report["verification"]]
    assert lengths == [1, 4, 8, 16, 24]  # 1, inside and at the edge of each bucket
    assert all(row["status"] == "passed" for row in report["verification"])
    assert "Buckets" in (folder / "report.md").read_text()


def test_a_longer_input_or_disagreeing_lengths_get_one_clear_line(bucketed_bert):
    _, folder = bucketed_bert
    with pytest.raises(
        InputSpecError, match=r"input 'input_ids' has sequence size 25 .*accepts sequence sizes 1\.\.24"
    ):
        edgecc.run(folder, tokens(25))
    with pytest.raises(InputSpecError, match="inputs 'input_ids' and 'attention_mask' have different sequence sizes"):
        edgecc.run(folder, {"input_ids": tokens(10)["input_ids"], "attention_mask": tokens(12)["attention_mask"]})
    empty = {k: v[:, :0] for k, v in tokens(4).items()}
    with pytest.raises(InputSpecError, match="sequence size 0"):
        edgecc.run(folder, empty)
    with pytest.raises(InputSpecError, match=r"shape 2x10, the artifact takes 1x1\.\.24"):
        edgecc.run(folder, tokens(10, batch=2))


def test_the_library_itself_refuses_a_length_past_its_largest_bucket(bucketed_bert):
    """A caller that skips edgecc's checks (a raw VM call) gets an error, not a read past its buffers."""
    import tvm

    _, folder = bucketed_bert
    vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(folder / "model.so")), tvm.cpu())
    long = tokens(30)
    with pytest.raises(Exception, match="sequence size must be 1..24"):
        vm["main"](*(tvm.runtime.tensor(long[k]) for k in ("input_ids", "attention_mask")))


def test_bench_times_the_length_asked_for_and_refuses_one_past_the_maximum(bucketed_bert):
    _, folder = bucketed_bert
    result = edgecc.bench(folder, seq_len=13, min_seconds=0.05)
    assert result["input_shapes"] == {"input_ids": [1, 13], "attention_mask": [1, 13]}
    assert result["edgecc"]["median_ms"] > 0 and result["onnxruntime"]["median_ms"] > 0
    with pytest.raises(InputSpecError, match=r"--seq-len 40: the artifact accepts sequence sizes 1\.\.24"):
        edgecc.bench(folder, seq_len=40, min_seconds=0.05)
    cli = CliRunner().invoke(main, ["bench", str(folder), "--seq-len", "5", "--min-seconds", "0.05"])
    assert cli.exit_code == 0, cli.output
    assert "inputs: input_ids 1x5, attention_mask 1x5" in cli.output


def test_edgecc_run_takes_an_npz_of_any_length(bucketed_bert, held_out_bert_onnx, tmp_path):
    _, folder = bucketed_bert
    inputs = tokens(11)
    np.savez(tmp_path / "in.npz", **inputs)
    cli = CliRunner().invoke(
        main, ["run", str(folder), "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz")]
    )
    assert cli.exit_code == 0, cli.output
    got = np.load(tmp_path / "out.npz")["last_hidden_state"]
    want = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
    assert got.shape == (1, 11, 48) and relative_error(got, want) < 1e-4
    np.savez(tmp_path / "long.npz", **tokens(31))
    cli = CliRunner().invoke(main, ["run", str(folder), "--inputs", str(tmp_path / "long.npz")])
    assert cli.exit_code != 0 and "Traceback" not in cli.output
    assert "accepts sequence sizes 1..24" in cli.output


def test_a_static_artifact_says_it_has_one_length(tmp_path, held_out_bert_onnx):
    edgecc.compile(held_out_bert_onnx, "host", tmp_path / "static", seq_len=8, verify=False, measure=False, log=quiet)
    with pytest.raises(InputSpecError, match="compiled for one sequence size"):
        edgecc.bench(tmp_path / "static", seq_len=4, min_seconds=0.05)


def test_models_that_cannot_be_bucketed_are_refused_before_any_bucket_compiles(tmp_path, held_out_bert_onnx):
    import onnx
    import torch

    static = onnx.load(str(held_out_bert_onnx))
    for value in static.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            dim.Clear()
        value.type.tensor_type.shape.dim[0].dim_value, value.type.tensor_type.shape.dim[1].dim_value = 1, 24
    onnx.save(static, tmp_path / "static.onnx")
    with pytest.raises(ModelError, match="no input has a dynamic sequence axis"):
        edgecc.compile(tmp_path / "static.onnx", "host", tmp_path / "a", max_seq_len=32, log=quiet)
    with pytest.raises(ModelError, match="fixed batch dimension"):
        edgecc.compile(tmp_path / "static.onnx", "host", tmp_path / "b", max_batch=4, log=quiet)

    class NoMask(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 8)

        def forward(self, input_ids):
            return torch.softmax(self.embed(input_ids) @ self.embed(input_ids).transpose(1, 2), dim=-1)

    torch.onnx.export(
        NoMask().eval(),
        (torch.zeros(1, 6, dtype=torch.int64),),
        str(tmp_path / "nomask.onnx"),
        input_names=["input_ids"],
        output_names=["scores"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"input_ids": {1: "sequence"}},
    )
    with pytest.raises(ModelError, match="no attention mask input"):
        edgecc.compile(tmp_path / "nomask.onnx", "host", tmp_path / "c", max_seq_len=32, log=quiet)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_bucket_options_that_do_not_fit_are_one_line(tmp_path):
    cases = [
        (dict(max_seq_len=0), "--max-seq-len must be a whole number >= 1"),
        (dict(seq_buckets="16,x"), "bad --seq-buckets"),
        (
            dict(seq_buckets=(16, 32), max_seq_len=64),
            r"largest of --seq-buckets \(32\) must equal --max-seq-len \(64\)",
        ),
        (dict(max_seq_len=32, input_specs=("input_ids:1x8:int64",)), "--input fixes one shape"),
        (
            dict(max_seq_len=32, precision="int8", calibration=tmp_path / "c.npz"),
            "--calibration FILE holds inputs of one shape",
        ),
    ]
    for options, message in cases:
        with pytest.raises(EdgeccError, match=message):
            edgecc.compile("bert-tiny-test", "host", tmp_path / "x", log=quiet, **options)
    cli = CliRunner().invoke(main, ["compile", "bert-tiny-test", "--seq-buckets", "8,,a", "-o", str(tmp_path / "y")])
    assert cli.exit_code != 0 and "bad --seq-buckets" in cli.output and "Traceback" not in cli.output


def test_a_vision_model_gets_one_artifact_for_every_batch(batch_cnn_onnx, tmp_path):
    result = edgecc.compile(batch_cnn_onnx, "host", tmp_path / "cnn", max_batch=4, measure=False, log=quiet)
    assert result.report["buckets"]["batch"] == [1, 2, 4] and result.report["buckets"]["sequence"] is None
    assert [row["batch"] for row in result.report["buckets"]["verification"]] == [1, 2, 3, 4]
    rng = np.random.default_rng(0)
    for batch in (1, 3, 4):
        pixels = {"pixel_values": rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)}
        got = edgecc.run(tmp_path / "cnn", pixels)["logits"]
        want = onnxruntime_outputs(batch_cnn_onnx, pixels)["logits"]
        assert got.shape == (batch, 10) and relative_error(got, want) < 1e-4
    with pytest.raises(InputSpecError, match="batch size 5"):
        edgecc.run(tmp_path / "cnn", {"pixel_values": np.zeros((5, 3, 16, 16), np.float32)})


@pytest.mark.slow
def test_minilm_one_artifact_up_to_256_tokens_is_at_most_1_3x_one_static_library(tmp_path):
    """The issue's case: all-MiniLM-L6-v2, buckets 16..256, against a static build at 256 (bench/dynamic.py
    times them)."""
    dynamic = edgecc.compile("minilm-l6", "host", tmp_path / "dynamic", max_seq_len=256, min_seconds=0.2, log=quiet)
    static = edgecc.compile("minilm-l6", "host", tmp_path / "static", seq_len=256, measure=False, log=quiet)
    buckets = dynamic.report["buckets"]
    assert buckets["sequence"] == [16, 32, 64, 128, 256]
    assert all(row["status"] == "passed" for row in buckets["verification"])
    assert dynamic.report["artifact"]["library_bytes"] <= 1.3 * static.report["artifact"]["library_bytes"]
    assert buckets["stored_constant_bytes"] < 0.25 * buckets["constant_bytes"]  # five buckets, one copy


def test_a_length_past_the_models_positions_names_its_maximum(held_out_bert_onnx, tmp_path):
    """The held-out BERT has 64 positions; TVM's importer said only `broadcast_to expects ...`."""
    from fixtures_hostile import assert_refused, edgecc_process

    with pytest.raises(ModelError, match="takes sequences of at most 64 tokens") as refused:
        edgecc.compile(held_out_bert_onnx, "host", tmp_path / "a", max_seq_len=100, log=quiet)
    assert "--max-seq-len 100 is too long; use --max-seq-len 64 or less" in str(refused.value)
    with pytest.raises(ModelError, match="--seq-len 65 is too long; use --seq-len 64 or less"):
        edgecc.compile(held_out_bert_onnx, "host", tmp_path / "b", seq_len=65, log=quiet)
    process = edgecc_process("compile", held_out_bert_onnx, "--max-seq-len", "80", "-o", "c", "-q", cwd=tmp_path)
    stdout, stderr = process.communicate(timeout=300)
    assert stdout == ""
    assert_refused(process.returncode, stderr, "at most 64 tokens", "--max-seq-len 80 is too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
