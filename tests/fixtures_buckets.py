"""Dynamic-shape artifacts shared by the bucket tests (one compile each per run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BUCKETS = (8, 24)  # the held-out BERT (dynamic axes, 64 positions, vocab 777) in two buckets
VOCAB = 777


def quiet(*_):
    pass


@pytest.fixture(scope="session")
def bucketed_bert(held_out_bert_onnx, tmp_path_factory):
    """(CompileResult, artifact folder) of the held-out BERT compiled once for every length 1..24."""
    import edgecc

    folder = tmp_path_factory.mktemp("buckets") / "bert"
    result = edgecc.compile(held_out_bert_onnx, "host", folder, seq_buckets=BUCKETS, min_seconds=0.2, log=quiet)
    return result, folder


def tokens(length: int, batch: int = 1, seed: int = 5, padded: int = 2) -> dict:
    """Random ids in the vocabulary; the last `padded` positions masked, as a tokenizer pads."""
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), dtype=np.int64)
    mask[:, length - min(padded, length - 1) :] = 0
    return {"input_ids": rng.integers(0, VOCAB, (batch, length)).astype(np.int64), "attention_mask": mask}


@pytest.fixture(scope="session")
def batch_cnn_onnx(tmp_path_factory) -> Path:
    """A small image classifier (conv, batch norm, pool, linear) exported with a dynamic batch axis."""
    import torch

    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(128, 10),
    ).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("models") / "batch_cnn.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 3, 16, 16),),
        str(path),
        input_names=["pixel_values"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path
