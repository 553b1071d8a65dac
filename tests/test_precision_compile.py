"""Precision and sparsity options through the whole compile (real TVM build, real ONNX Runtime)."""

import pytest

import edgecc
from edgecc.errors import VerificationError


def test_int8_compile_reports_accuracy_vs_fp32(held_out_bert_onnx, tmp_path):
    fp32 = edgecc.compile(
        held_out_bert_onnx, "host", tmp_path / "fp32", seq_len=24, preset="quick", log=lambda *_: None
    )
    int8 = edgecc.compile(
        held_out_bert_onnx, "host", tmp_path / "int8", seq_len=24, preset="quick", precision="int8", log=lambda *_: None
    )
    accuracy = int8.report["accuracy"]
    assert accuracy["precision"] == "int8" and accuracy["method"].startswith("model outputs")
    assert accuracy["mean_cosine"] > 0.99 and 0 <= accuracy["accuracy_drop"] < 0.01
    assert fp32.report["accuracy"] == {}
    # host has INT8 arithmetic: each layer in INT8 where that timed faster here, else FP32 with the reason
    # (a CPU without a dot-product instruction: calibrated INT8 where the error allows, else dequantize on load)
    int8_summary = accuracy["int8"]
    others = int8_summary.get("fp32_layers", int8_summary.get("dequantize_on_load_layers"))
    assert int8_summary["int8_math_layers"] + others == 6
    assert all(f["reason"] for f in int8_summary.get("fallbacks", ()))
    assert int8_summary in int8.report["passes"].values()  # the pass's statistics, as the report lists them
    # (this model's weights are too small to shrink the library; test_pass_quantize_* measures that)
    assert int8.report["verification"]["status"] != "failed"


def test_max_accuracy_drop_fails_the_compile(held_out_bert_onnx, tmp_path):
    with pytest.raises(VerificationError, match="exceeds --max-accuracy-drop"):
        edgecc.compile(
            held_out_bert_onnx,
            "host",
            tmp_path / "strict",
            seq_len=24,
            preset="quick",
            precision="int8",
            max_accuracy_drop=1e-9,
            log=lambda *_: None,
        )


def test_sparse_attention_compile_reports_its_accuracy_cost(held_out_bert_onnx, tmp_path):
    result = edgecc.compile(
        held_out_bert_onnx,
        "host",
        tmp_path / "sparse",
        seq_len=24,
        preset="quick",
        sparse_attention="block=4,global=1",
        tolerance=10.0,
        log=lambda *_: None,
    )
    accuracy = result.report["accuracy"]
    assert accuracy["sparse_attention"] == "block=4,global=1"
    assert 0 < accuracy["accuracy_drop"] < 0.5
    summary = accuracy["sparse_attention_summary"]
    assert summary["attentions_rewritten"] == 3  # one per layer of the held-out BERT
    assert summary["attention_flops_sparse"] < summary["attention_flops_dense"]


def test_a_classifier_reports_top1_agreement_with_its_fp32_model(batch_cnn_onnx, tmp_path):
    result = edgecc.compile(
        batch_cnn_onnx, "host", tmp_path / "cnn", batch=1, preset="quick", precision="int8", log=lambda *_: None
    )
    accuracy = result.report["accuracy"]
    assert accuracy["samples"] == 32 and accuracy["top1_rows"] == 32  # one [1, 10] score row per input
    assert accuracy["top1_agreement"] >= 0.9 and "seeded random inputs" in accuracy["inputs"]
    assert "top-1 agreement" in (tmp_path / "cnn" / "report.md").read_text()
