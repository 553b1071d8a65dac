from __future__ import annotations

import numpy as np
import pytest

from edgecc.atomic import staged_directory
from edgecc.errors import InputSpecError
from edgecc.frontend.inputs import TensorSpec, parse_input_spec, resolve_input_specs, sample_inputs
from edgecc.measure.latency import latency_stats
from edgecc.measure.verification import output_errors, verdict


def test_latency_stats_by_hand():
    stats = latency_stats([0.001, 0.002, 0.003, 0.004, 0.010])
    assert stats["median_ms"] == pytest.approx(3.0)
    assert stats["mean_ms"] == pytest.approx(4.0)
    assert stats["min_ms"] == pytest.approx(1.0)
    assert stats["p10_ms"] == pytest.approx(1.4)
    assert stats["std_ms"] == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1))
    assert stats["cv"] == pytest.approx(stats["std_ms"] / 4.0)
    assert stats["unstable"] is True
    assert latency_stats([0.01] * 20)["unstable"] is False


def test_relative_error_is_normalised_by_the_output_scale():
    rows = output_errors({"y": np.array([1.0, 2.0, 4.001])}, {"y": np.array([1.0, 2.0, 4.0])})
    assert rows[0]["max_abs_error"] == pytest.approx(0.001)
    assert rows[0]["max_rel_error"] == pytest.approx(0.001 / 4.0)
    assert verdict(rows, 1e-3)[0] == "passed"
    assert verdict(rows, 1e-4)[0] == "failed"
    tiny = output_errors({"y": np.array([3e-41])}, {"y": np.array([1e-41])})
    assert verdict(tiny, 1e-4)[0] == "inconclusive"
    nan_rows = output_errors({"y": np.array([np.nan])}, {"y": np.array([1.0])})
    assert verdict(nan_rows, 1.0)[0] == "failed"


def test_input_specs():
    assert parse_input_spec("input_ids:1x128:int64") == TensorSpec("input_ids", (1, 128), "int64")
    assert parse_input_spec("x:2x3").dtype == "float32"
    with pytest.raises(InputSpecError):
        parse_input_spec("x:0x3")
    graph = [("input_ids", ["batch", "seq"], "int64"), ("pixel", [1, 3, 8, 8], "float32")]
    specs = resolve_input_specs(graph, [], batch=2, seq_len=7)
    assert specs[0].shape == (2, 7) and specs[1].shape == (1, 3, 8, 8)
    with pytest.raises(InputSpecError, match="fixed to 3"):
        resolve_input_specs(graph, [TensorSpec("pixel", (1, 4, 8, 8), "float32")], 1, 1)


def test_sample_inputs_respect_embedding_bounds_and_masks():
    specs = [TensorSpec("input_ids", (1, 64), "int64"), TensorSpec("attention_mask", (1, 64), "int64")]
    values = sample_inputs(specs, {"input_ids": 50})
    assert values["input_ids"].max() < 50 and values["input_ids"].min() >= 0
    assert values["attention_mask"][0, :48].all() and not values["attention_mask"][0, 48:].any()


def test_staged_directory_replaces_only_on_success(tmp_path):
    final = tmp_path / "art"
    with staged_directory(final) as stage:
        (stage / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with staged_directory(final) as stage:
            (stage / "a").write_text("2")
            raise RuntimeError("boom")
    assert (final / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
