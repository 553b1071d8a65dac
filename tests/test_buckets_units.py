"""The bucket plan, the axis analysis and the shape checks, without compiling anything."""

from __future__ import annotations

import numpy as np
import pytest

from edgecc.buckets.check import inside_points
from edgecc.buckets.plan import Bucket, bucket_plan
from edgecc.buckets.shapes import check_dynamic_shapes, input_dynamic_axes, output_dynamic_axes, specs_at
from edgecc.errors import InputSpecError, ModelError
from edgecc.frontend.inputs import TensorSpec, check_inputs
from edgecc.options import CompileOptions


@pytest.mark.parametrize(
    "options, sequence, batch",
    [
        (dict(max_seq_len=256), [16, 32, 64, 128, 256], None),
        (dict(max_seq_len=200), [16, 32, 64, 128, 200], None),
        (dict(max_seq_len=10), [10], None),
        (dict(seq_buckets="64, 8,8,32"), [8, 32, 64], None),
        (dict(max_batch=4), None, [1, 2, 4]),
        (dict(max_batch=3, max_seq_len=32), [16, 32], [1, 2, 3]),
    ],
)
def test_default_buckets_are_powers_of_two_up_to_the_maximum(options, sequence, batch):
    plan = bucket_plan(CompileOptions(**options))
    assert plan.to_dict() == {"sequence": sequence, "batch": batch}
    assert len(plan.buckets) == len(sequence or [0]) * len(batch or [0])
    assert plan.largest == Bucket(batch[-1] if batch else None, sequence[-1] if sequence else None)
    assert bucket_plan(CompileOptions()) is None


def test_bucket_tags_name_only_the_bucketed_dimensions():
    assert [Bucket(None, 16).tag, Bucket(2, None).tag, Bucket(4, 64).tag] == ["s16", "b2", "b4_s64"]


TEXT = [
    ("input_ids", ["batch", "sequence"], "int64"),
    ("attention_mask", ["batch", "sequence"], "int64"),
    ("token_type_ids", ["batch", "sequence"], "int64"),
]


def test_input_axes_come_from_the_graphs_symbolic_dimensions():
    plan = bucket_plan(CompileOptions(max_seq_len=64, max_batch=2))
    axes = input_dynamic_axes(TEXT, plan, "m")
    assert axes == {name: ((0, "batch"), (1, "sequence")) for name, _, _ in TEXT}
    only_seq = input_dynamic_axes(TEXT, bucket_plan(CompileOptions(max_seq_len=64)), "m")
    assert only_seq["input_ids"] == ((1, "sequence"),)


def test_inputs_that_cannot_be_bucketed_name_the_reason():
    plan = bucket_plan(CompileOptions(max_seq_len=64))
    with pytest.raises(ModelError, match="no input has a dynamic sequence axis"):
        input_dynamic_axes([("input_ids", [1, 128], "int64")], plan, "m")
    with pytest.raises(ModelError, match="several dynamic dimensions besides the batch"):
        input_dynamic_axes(
            [
                ("input_ids", [1, "seq"], "int64"),
                ("past", [1, "past_seq"], "float32"),
                ("attention_mask", [1, "seq"], "int64"),
            ],
            plan,
            "m",
        )
    with pytest.raises(ModelError, match="no attention mask input"):
        input_dynamic_axes([("input_ids", [1, "seq"], "int64")], plan, "m")


def test_output_axes_are_those_that_follow_the_bucket_size():
    def out(*shape):
        return [TensorSpec("hidden", shape, "float32"), TensorSpec("pooled", (1, 48), "float32")]

    axes = output_dynamic_axes([(Bucket(None, 16), out(1, 16, 48)), (Bucket(None, 48), out(1, 48, 48))])
    assert axes == {"hidden": ((1, "sequence"),)}  # 48 = hidden size at bucket 48 does not confuse it
    with pytest.raises(ModelError, match="changes with the input shape"):
        output_dynamic_axes([(Bucket(None, 16), out(1, 32, 48)), (Bucket(None, 32), out(1, 64, 48))])


SPECS = [
    TensorSpec("input_ids", (2, 64), "int64", ((0, "batch"), (1, "sequence"))),
    TensorSpec("attention_mask", (2, 64), "int64", ((0, "batch"), (1, "sequence"))),
    TensorSpec("pixel_scale", (3,), "float32"),
]


def test_dynamic_shapes_accept_any_size_up_to_the_maximum_equal_across_inputs():
    arrays = {
        "input_ids": np.zeros((1, 7), np.int64),
        "attention_mask": np.ones((1, 7), np.int64),
        "pixel_scale": np.ones(3, np.float32),
    }
    assert check_dynamic_shapes(arrays, SPECS, "inputs") == {"batch": 1, "sequence": 7}
    check_inputs(arrays, SPECS, "inputs")
    bad = [
        (
            {"input_ids": np.zeros((1, 65), np.int64)},
            r"sequence size 65 \(shape 1x65\); the artifact accepts sequence sizes 1\.\.64",
        ),
        ({"attention_mask": np.ones((2, 7), np.int64)}, "different batch sizes"),
        ({"pixel_scale": np.ones(4, np.float32)}, "has shape 4, the artifact takes 3"),
        ({"input_ids": np.zeros((7,), np.int64)}, r"takes rank 2 \(1\.\.2x1\.\.64\)"),
        ({"input_ids": np.zeros((1, 7), np.int32)}, "dtype int32"),
    ]
    for change, message in bad:
        with pytest.raises(InputSpecError, match=message):
            check_inputs({**arrays, **change}, SPECS, "inputs")


def test_specs_at_a_size_and_their_manifest_form():
    at = specs_at(SPECS, seq_len=9)
    assert [s.shape for s in at] == [(2, 9), (2, 9), (3,)]
    assert SPECS[0].to_dict()["dynamic_axes"] == {"0": "batch", "1": "sequence"}
    assert TensorSpec.from_dict(SPECS[0].to_dict()) == SPECS[0]
    assert "dynamic_axes" not in SPECS[2].to_dict()
    with pytest.raises(InputSpecError, match="--seq-len 65: the artifact accepts sequence sizes 1..64"):
        specs_at(SPECS, seq_len=65)


def test_verification_covers_one_each_bucket_and_a_size_inside_it():
    assert inside_points([16, 32, 64]) == [1, 8, 16, 24, 32, 48, 64]
    assert inside_points([1, 2, 4]) == [1, 2, 3, 4]
