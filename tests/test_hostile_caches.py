"""Caches are keyed by content: a Hugging Face folder whose weights changed is exported again (it
compiled the old weights before, and verification "passed" against the stale export); the same
weights in another folder reuse the export; a built-in's key follows its definition."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import edgecc
from edgecc.frontend.export import export_builtin, export_hf_folder

from fixtures_models import bert_folder


def _save_bert(folder, seed: int):
    return bert_folder(
        folder,
        seed,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        vocab_size=97,
        max_position_embeddings=32,
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_changed_weights_in_the_same_folder_are_exported_and_compiled_again(tmp_path, cache):
    folder = _save_bert(tmp_path / "hf", seed=1)
    inputs = {"input_ids": np.arange(8, dtype=np.int64).reshape(1, 8), "attention_mask": np.ones((1, 8), np.int64)}
    first = edgecc.compile(folder, "host", tmp_path / "a", seq_len=8, measure=False, log=lambda *_: None)
    before = edgecc.run(first.artifact_dir, inputs)["last_hidden_state"]
    _save_bert(folder, seed=2)  # same path, same config, new weights
    second = edgecc.compile(folder, "host", tmp_path / "b", seq_len=8, measure=False, log=lambda *_: None)
    after = edgecc.run(second.artifact_dir, inputs)["last_hidden_state"]
    assert second.report["verification"]["status"] == "passed"
    assert not np.allclose(before, after, atol=1e-3)  # the new weights were compiled
    assert first.report["model"]["weights"] != second.report["model"]["weights"]  # the note names the weights' hash
    # and the new artifact computes what the new weights compute (PyTorch, straight from the folder)
    import torch
    from transformers import BertModel

    reference = BertModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    with torch.no_grad():
        expected = reference(
            input_ids=torch.from_numpy(inputs["input_ids"]), attention_mask=torch.from_numpy(inputs["attention_mask"])
        ).last_hidden_state.numpy()
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-4)


def test_the_same_weights_elsewhere_reuse_the_export_and_a_config_change_does_not(tmp_path, cache):
    folder = _save_bert(tmp_path / "hf", seed=3)
    first = export_hf_folder(folder, 1, 8, progress=lambda *_: None)
    copy = tmp_path / "copy" / "hf"
    shutil.copytree(folder, copy)
    assert export_hf_folder(copy, 1, 8, progress=lambda *_: None).onnx_path == first.onnx_path
    assert export_hf_folder(folder, 1, 16, progress=lambda *_: None).onnx_path != first.onnx_path  # shape in the key
    (copy / "config.json").write_text(
        (copy / "config.json").read_text().replace('"hidden_act": "gelu"', '"hidden_act": "relu"')
    )
    assert export_hf_folder(copy, 1, 8, progress=lambda *_: None).onnx_path != first.onnx_path


def test_a_builtin_export_is_keyed_by_its_definition(cache, monkeypatch):
    from edgecc.frontend import export as export_module

    first = export_builtin("bert-tiny-test", 1, 8, progress=lambda *_: None)
    assert export_builtin("bert-tiny-test", 1, 8, progress=lambda *_: None).onnx_path == first.onnx_path
    monkeypatch.setattr(export_module, "EXPORT_VERSION", export_module.EXPORT_VERSION + 1000)
    assert (
        export_module._builtin_key(export_module.builtin_model("bert-tiny-test"), "b1-s8") not in first.onnx_path.name
    )


def test_a_failed_wheel_download_is_one_line_and_leaves_nothing(tmp_path):
    """The one pip-download path behind the bundle's runtime libraries and the CUDA 12 headers."""

    from edgecc.errors import ToolchainError
    from edgecc.platform_wheels import download_wheels

    with pytest.raises(ToolchainError) as raised:
        download_wheels(tmp_path, ["manylinux2014_aarch64"], ["not a requirement!!"], "the test wheels for aarch64")
    message = str(raised.value)
    assert message.startswith("could not download the test wheels for aarch64: pip said: ")
    assert "\n" not in message and list(tmp_path.iterdir()) == []
