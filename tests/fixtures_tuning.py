from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def dense_onnx(tmp_path_factory) -> Path:
    """y = x @ W + b: one kernel, so a tuning run of a few trials reaches it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 48)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal((48,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"], name="dense"),
         helper.make_node("Add", ["xw", "b"], ["y"], name="bias")],
        "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 48])], initializer=[weight, bias])
    path = tmp_path_factory.mktemp("tuning") / "dense.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="session")
def tuned_dense(dense_onnx, tmp_path_factory):
    """A real tuning run (16 trials) whose log later tests reuse."""
    import edgecc

    logs = tmp_path_factory.mktemp("tuning_logs")
    result = edgecc.compile(dense_onnx, "host", logs.parent / "tuned-dense", tune=True, trials=16,
                            tuning_logs=(logs,), min_seconds=0.2, log=lambda *_: None)
    return result, logs
