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


def random_bert(seed: int, **sizes):
    """A BertModel of `sizes` (BertConfig's arguments) without its pooler, initialised from `seed`."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    return BertModel(BertConfig(**sizes), add_pooling_layer=False).eval()


def bert_onnx(path: Path, seed: int, seq_len: int, **sizes) -> Path:
    """A randomly initialised BertModel of `sizes` (BertConfig's arguments), exported for `seq_len` tokens."""
    model = random_bert(seed, **sizes)
    return export_text_model(model, path, 1, seq_len, model.config.vocab_size)


def bert_folder(folder: Path, seed: int, **sizes) -> Path:
    """A randomly initialised BertModel of `sizes`, saved as a Hugging Face folder (no tokenizer)."""
    random_bert(seed, **sizes).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def held_out_bert_onnx(tmp_path_factory) -> Path:
    """A BERT nobody tuned for: odd sizes (hidden 48, 3 heads, 3 layers, FFN 100, vocab 777)."""
    return bert_onnx(
        tmp_path_factory.mktemp("models") / "held_out_bert.onnx",
        1,
        24,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=100,
        vocab_size=777,
        max_position_embeddings=64,
        type_vocab_size=2,
    )


@pytest.fixture(scope="session")
def unusual_heads_bert_onnx(tmp_path_factory) -> Path:
    """A BERT of 6 heads of 24 (hidden 144, 1 layer, FFN 200, vocab 333) at 77 tokens."""
    return bert_onnx(
        tmp_path_factory.mktemp("models") / "unusual_heads_bert.onnx",
        5,
        77,
        hidden_size=144,
        num_hidden_layers=1,
        num_attention_heads=6,
        intermediate_size=200,
        vocab_size=333,
        max_position_embeddings=96,
    )


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
