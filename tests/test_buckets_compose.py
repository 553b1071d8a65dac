"""Buckets compose with what a static compile does: INT8, sparse attention and tuning records
are applied per bucket, at each bucket's shape, like a static compile at that shape."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_buckets import quiet, tokens

import edgecc

from fixtures_models import onnxruntime_outputs


def test_int8_buckets_share_their_quantized_weights_and_stay_close_to_fp32(held_out_bert_onnx, tmp_path):
    result = edgecc.compile(
        held_out_bert_onnx, "host", tmp_path / "int8", precision="int8", seq_buckets=(8, 24), measure=False, log=quiet
    )
    buckets = result.report["buckets"]
    for bucket in buckets["buckets"]:
        int8 = bucket["passes"]["quantize_dense_layers_int8"]
        assert int8["int8_math_layers"] + int8["fp32_layers"] >= 6 and int8["embedding_tables"] >= 1
    assert buckets["stored_constant_bytes"] < 0.6 * buckets["constant_bytes"]  # int8 weights stored once
    assert [row["status"] for row in buckets["verification"]] == ["reported"] * 5  # int8 has no fp32 tolerance
    for length in (5, 19):
        inputs = tokens(length)
        got = edgecc.run(tmp_path / "int8", inputs)["last_hidden_state"]
        want = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < 0.02


def test_sparse_attention_applies_in_the_buckets_long_enough_for_it(held_out_bert_onnx, tmp_path):
    result = edgecc.compile(
        held_out_bert_onnx,
        "host",
        tmp_path / "sparse",
        sparse_attention="window=8,global=1",
        seq_buckets=(16, 32),
        measure=False,
        log=quiet,
    )
    by_length = {b["seq_len"]: b["passes"]["rewrite_attention_sparse"] for b in result.report["buckets"]["buckets"]}
    assert by_length[16]["attentions_kept_dense"] == 3  # 25 keys per query: nothing to skip in 16 tokens
    assert by_length[32]["attentions_rewritten"] == 3
    assert result.report["accuracy"]["accuracy_drop"] < 1e-3
    got = edgecc.run(tmp_path / "sparse", tokens(27))["last_hidden_state"]
    assert got.shape == (1, 27, 48) and np.all(np.isfinite(got))


@pytest.fixture(scope="module")
def dynamic_dense_onnx(tmp_path_factory):
    """tuned_dense's model (y = x @ W + b, the same weights) with a dynamic batch axis."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 48)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal((48,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"], name="dense"),
            helper.make_node("Add", ["xw", "b"], ["y"], name="bias"),
        ],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 48])],
        initializer=[weight, bias],
    )
    path = tmp_path_factory.mktemp("tuning") / "dynamic_dense.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_tuning_record_applies_to_the_bucket_of_its_shape(tuned_dense, dynamic_dense_onnx, tmp_path):
    """tuned_dense tuned the 32-row kernel; of buckets 1..32, exactly the 32-row one finds the record."""
    _, logs = tuned_dense
    result = edgecc.compile(
        dynamic_dense_onnx, "host", tmp_path / "dense", max_batch=32, tuning_logs=(logs,), measure=False, log=quiet
    )
    # the record found is a tuned one, or the default schedule's, which beat every tuned one
    found = [(b["batch"], b["tuning"]["applied"]) for b in result.report["buckets"]["buckets"]]
    applied = {batch: a["tuned"] + a["default_fastest"] for batch, a in found}
    assert applied == {1: 0, 2: 0, 4: 0, 8: 0, 16: 0, 32: 1}
    x = np.random.default_rng(1).standard_normal((20, 64)).astype(np.float32)
    got = edgecc.run(tmp_path / "dense", {"x": x})["y"]
    want = onnxruntime_outputs(dynamic_dense_onnx, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
