"""Small real models for tests: exported from transformers through torch.onnx, like user models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def export_text_model(module, path: Path, batch: int, seq_len: int, vocab: int) -> Path:
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    wrapper = Wrapper(module).eval()
    ids = torch.randint(0, vocab, (batch, seq_len))
    mask = torch.ones(batch, seq_len, dtype=torch.int64)
    torch.onnx.export(
        wrapper,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
    )
    return path


@pytest.fixture(scope="session")
def held_out_bert_onnx(tmp_path_factory) -> Path:
    """A BERT nobody tuned for: odd sizes (hidden 48, 3 heads, 3 layers, FFN 100, vocab 777)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    config = BertConfig(
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=100,
        vocab_size=777,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    return export_text_model(model, tmp_path_factory.mktemp("models") / "held_out_bert.onnx", 1, 24, 777)


@pytest.fixture(scope="session")
def held_out_distilbert_onnx(tmp_path_factory) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(2)
    config = DistilBertConfig(dim=40, n_layers=2, n_heads=5, hidden_dim=72, vocab_size=501, max_position_embeddings=64)
    model = DistilBertModel(config).eval()
    return export_text_model(model, tmp_path_factory.mktemp("models") / "held_out_distilbert.onnx", 1, 20, 501)


def onnxruntime_outputs(onnx_path: Path, inputs: dict) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def token_inputs(seq_len: int, vocab: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones((1, seq_len), dtype=np.int64)
    mask[0, -3:] = 0
    return {"input_ids": rng.integers(0, vocab, (1, seq_len)).astype(np.int64), "attention_mask": mask}
