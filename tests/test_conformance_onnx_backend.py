"""Conformance: the small models the `onnx` package ships with its backend tests (pytorch-converted,
pytorch-operator, simple: 140 models), compiled through edgecc and compared with the outputs the test
data gives (tests/conformance/onnx_backend.py does the work; run it alone for a table).

Goal: every model that bare TVM 0.27 builds (`relax.frontend.onnx.from_onnx` + `relax.build`)
matches through edgecc, except the few listed below with their reason; every other model fails with
one clear line, and no wrong answer passes a (verified) compile. Most of these models are old IR
versions that list initializers as graph inputs, which onnxslim cannot read: edgecc imports them
unsimplified (report.json model.import says so).

The whole suite takes ~3.5 minutes on 2 cores (slow tier); a handful of representative models run
in the default tier.
"""

from __future__ import annotations

import json

import pytest

from conformance.onnx_backend import cases, run_all, run_case

# Models that do not match through edgecc, each with why. "bare" = bare TVM fails too.
EXPECTED_FAILURES = {
    # bare TVM builds these, but computes them wrong (checked against the test data and ONNX Runtime);
    # a normal, verified edgecc compile refuses them with "verification failed"
    "simple/test_expand_shape_model3": "TVM: Expand to a shape given at run time keeps the input's size-1 axis",
    "simple/test_expand_shape_model4": "TVM: Expand to a shape given at run time keeps the input's size-1 axis",
    "simple/test_sequence_model3": "TVM: SequenceErase/SequenceInsert at a negative position picks the wrong item",
    # bare TVM fails too; edgecc says why in one line
    "pytorch-converted/test_PReLU_1d_multiparam": "bare: TVM's PReLU legalization asserts on a per-channel slope",
    "pytorch-converted/test_PReLU_2d_multiparam": "bare: TVM's PReLU legalization asserts on a per-channel slope",
    "pytorch-converted/test_PReLU_3d_multiparam": "bare: TVM's PReLU legalization asserts on a per-channel slope",
    "pytorch-operator/test_operator_index": "bare: the Relax ONNX importer fails (Gather of a shape)",
    "simple/test_expand_shape_model1": "bare: the Relax ONNX importer fails (Expand to fewer dims)",
    "simple/test_expand_shape_model2": "bare: the Relax ONNX importer fails (Expand to fewer dims)",
    "simple/test_gradient_of_add": "bare: ai.onnx.preview.training::Gradient is a training op",
    "simple/test_gradient_of_add_and_mul": "bare: ai.onnx.preview.training::Gradient is a training op",
    "simple/test_sequence_model6": "bare: the Relax ONNX importer fails (SplitToSequence without split)",
    "simple/test_sequence_model8": "bare: the Relax ONNX importer fails (SplitToSequence of a run-time split)",
    "simple/test_strnorm_model_monday_casesensintive_lower": "bare: string tensors",
    "simple/test_strnorm_model_monday_casesensintive_nochangecase": "bare: string tensors",
    "simple/test_strnorm_model_monday_casesensintive_upper": "bare: string tensors",
    "simple/test_strnorm_model_monday_empty_output": "bare: string tensors",
    "simple/test_strnorm_model_monday_insensintive_upper_twodim": "bare: string tensors",
    "simple/test_strnorm_model_nostopwords_nochangecase": "bare: string tensors",
}
# Default tier: old-IR models onnxslim cannot read (the fallback), a conv, a sequence op, a TVM bug caught.
QUICK = [
    "pytorch-converted/test_AvgPool1d",
    "pytorch-operator/test_operator_add_broadcast",
    "simple/test_sequence_model3",
    "simple/test_gradient_of_add",
]


def _check(outcome) -> None:
    assert not outcome.edgecc.startswith("crash"), outcome  # edgecc raised something that is not an EdgeccError
    assert "SILENT WRONG ANSWER" not in outcome.edgecc, outcome
    if outcome.name in EXPECTED_FAILURES:
        reason = EXPECTED_FAILURES[outcome.name]
        assert outcome.edgecc != "match", f"{outcome.name} matches now: remove it from EXPECTED_FAILURES"
        assert (outcome.bare_tvm != "builds") == reason.startswith("bare:"), outcome
        if outcome.edgecc.startswith("error: "):
            assert "\n" not in outcome.edgecc and "internal error" not in outcome.edgecc, outcome
    else:
        assert outcome.edgecc == "match", outcome


def _by_name():
    return {f"{c.parent.name}/{c.name}": c for c in cases()}


@pytest.mark.parametrize("name", QUICK)
def test_representative_backend_models(name):
    _check(run_case(_by_name()[name]))


@pytest.mark.slow
def test_every_backend_model(tmp_path):
    outcomes = run_all(cases(), jobs=2)
    (tmp_path / "outcomes.json").write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    assert len(outcomes) == 140
    problems = []
    for outcome in outcomes:
        try:
            _check(outcome)
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)
    builds = [o for o in outcomes if o.bare_tvm == "builds"]
    matched = [o for o in builds if o.edgecc == "match"]
    assert len(matched) >= 0.95 * len(builds), (len(matched), len(builds))
