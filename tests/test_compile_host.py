"""End to end on the host: compile, verify against ONNX Runtime, run, bench."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

import edgecc
from edgecc.artifact.manifest import sha256
from edgecc.cli import main

from fixtures_models import onnxruntime_outputs, token_inputs


def test_held_out_bert_compiles_verifies_and_runs(held_out_bert_onnx, tmp_path):
    out = tmp_path / "bert"
    result = edgecc.compile(held_out_bert_onnx, "host", out, seq_len=24, min_seconds=0.2, log=lambda *_: None)

    verification = result.report["verification"]
    assert verification["status"] == "passed"
    assert verification["outputs"][0]["max_rel_error"] < 1e-4
    assert result.manifest["inputs"] == [
        {"name": "input_ids", "shape": [1, 24], "dtype": "int64", "valid_range": [0, 777]},  # vocab rows
        {"name": "attention_mask", "shape": [1, 24], "dtype": "int64"},
    ]
    assert result.manifest["outputs"] == [{"name": "last_hidden_state", "shape": [1, 24, 48], "dtype": "float32"}]
    for name, info in result.manifest["files"].items():
        assert sha256(out / name) == info["sha256"]
    # every graph pass's statistics and every kernel's schedule source reach the report
    assert result.report["passes"]["fuse_attention"]["attentions_fused"] == 3
    # opset 17 exports LayerNormalization itself
    assert "layer_norms_fused" in result.report["passes"]["fuse_layer_norm"]
    assert result.report["schedules"]["unscheduled"] == [] and result.report["schedules"]["kernels"] > 5
    assert "## Schedules" in (out / "report.md").read_text()

    inputs = token_inputs(24, 777)
    np.savez(tmp_path / "in.npz", **inputs)
    cli = CliRunner().invoke(
        main, ["run", str(out), "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz")]
    )
    assert cli.exit_code == 0, cli.output
    got = np.load(tmp_path / "out.npz")["last_hidden_state"]
    want = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < 1e-4


def test_report_has_latency_stats_and_ratio(held_out_distilbert_onnx, tmp_path):
    out = tmp_path / "distil"
    edgecc.compile(held_out_distilbert_onnx, "host", out, seq_len=20, min_seconds=0.2, log=lambda *_: None)
    report = json.loads((out / "report.json").read_text())
    edgecc_stats, ort_stats = report["latency"]["edgecc"], report["latency"]["onnxruntime"]
    for stats in (edgecc_stats, ort_stats):
        assert stats["runs"] >= 10
        assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert abs(report["latency"]["ratio_vs_onnxruntime"] - edgecc_stats["median_ms"] / ort_stats["median_ms"]) < 1e-9
    assert "edgecc / ONNX Runtime" in (out / "report.md").read_text()
    assert report["verification"]["status"] == "passed"


def test_builtin_model_through_cli_and_bench(tmp_path):
    out = tmp_path / "tiny"
    cli = CliRunner().invoke(
        main, ["compile", "bert-tiny-test", "--seq-len", "16", "-o", str(out), "--min-seconds", "0.2"]
    )
    assert cli.exit_code == 0, cli.output
    assert "verify:   passed" in cli.output
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["kind"] == "builtin" and report["model"]["weights"] == "random"
    assert report["target"]["name"] == "host" and report["target"]["tvm_target"]["mcpu"]
    bench = CliRunner().invoke(main, ["bench", str(out), "--min-seconds", "0.2"])
    assert bench.exit_code == 0, bench.output
    assert "edgecc / ONNX Runtime:" in bench.output


def test_seq_len_and_input_override_agree(held_out_bert_onnx, tmp_path):
    result = edgecc.compile(
        held_out_bert_onnx,
        "host",
        tmp_path / "a",
        input_specs=("input_ids:1x12:int64", "attention_mask:1x12:int64"),
        measure=False,
        log=lambda *_: None,
    )
    assert result.manifest["outputs"][0]["shape"] == [1, 12, 48]
    assert result.report["verification"]["status"] == "passed"


def test_dump_ir_writes_the_module_after_every_graph_pass_and_stage(tmp_path):
    dump = tmp_path / "ir"
    edgecc.compile(
        "bert-tiny-test",
        "host",
        tmp_path / "out",
        seq_len=8,
        dump_ir=dump,
        verify=False,
        measure=False,
        log=lambda *_: None,
    )
    names = sorted(p.name for p in dump.iterdir())
    assert names == [
        "01-convert_convs_to_nhwc.py",
        "02-pad_channels_to_vectors.py",
        "03-fuse_layer_norm.py",
        "04-fuse_bias_gelu_epilogue.py",
        "05-fuse_attention.py",
        "06-fold_transposes_into_matmuls.py",
        "07-sink_reshapes_below_elementwise.py",
        "08-pad_matmul_columns.py",
        "09-expand_sigmoid.py",
        "10-multiply_by_reciprocals.py",
        "11-clamp_gather_indices.py",
        "lowered.py",
        "scheduled.py",
    ]
    assert "R.nn.layer_norm" in (dump / "03-fuse_layer_norm.py").read_text()
    assert "fused_attention" in (dump / "05-fuse_attention.py").read_text()
