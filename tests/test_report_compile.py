"""A compile on this machine writes report.json (schema-valid), report.md and report.html with estimated
energy clearly labelled, a per-kernel profile that adds up to the end-to-end latency, and roofline placement."""

import json

import pytest

import edgecc
from edgecc.reports.schema import SCHEMA_VERSION, validate_report

RESULTS = {}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "tinybert-4"
    # A model of the size edgecc is for (TinyBERT-4, 128 tokens, ~8 ms): in a toy model of 0.2-1 ms
    # the runtime's few microseconds per call between kernels (dispatch, allocation, waking the
    # second thread) are 15-25% of the time, which a per-kernel table rightly does not contain.
    RESULTS['model'] = edgecc.compile("tinybert-4", "host", out, seq_len=128, min_seconds=0.3, log=lambda *_: None)
    return out


def test_three_reports_and_schema(compiled):
    report = json.loads((compiled / "report.json").read_text())
    assert report["schema_version"] == SCHEMA_VERSION
    validate_report(report)
    assert (compiled / "report.md").stat().st_size > 0
    html = (compiled / "report.html").read_text()
    assert html.count('<img') >= 2  # per-kernel bars and roofline at least


def test_energy_is_estimated_and_labelled_everywhere(compiled):
    report = json.loads((compiled / "report.json").read_text())
    energy = report["energy"]
    assert energy["kind"] == "estimated"  # this machine has no power meter
    board = report["target"]["board"]
    latency_s = report["latency"]["edgecc"]["median_ms"] / 1e3
    assert energy["joules_per_inference"] == pytest.approx((board["tdp_watts"] - board["idle_watts"]) * latency_s)
    assert "ESTIMATED" in (compiled / "report.md").read_text()
    assert "ESTIMATED" in (compiled / "report.html").read_text()


def test_kernel_times_add_up_and_each_has_a_roofline_place(compiled):
    profile = json.loads((compiled / "report.json").read_text())["profile"]
    assert profile["kernel_count"] >= 5 and not profile["skipped"]
    # each kernel timed alone, times its calls, should account for the end-to-end time within 15%
    ratios = [profile["sum_over_end_to_end"]]
    # the machine is shared: when another job ran during one of the two timings, time both again, back to back
    for _ in range(3):
        if 0.85 <= ratios[-1] <= 1.15:
            break
        ratios.append(_remeasured_ratio(RESULTS['model'].context))
    assert 0.85 <= ratios[-1] <= 1.15, ratios
    totals = [k["total_ms"] for k in profile["kernels"]]
    assert totals == sorted(totals, reverse=True)
    for kernel in profile["kernels"]:
        assert kernel["bound"] in ("compute", "memory")
        assert kernel["bytes"] > 0 and kernel["achieved_gbs"] > 0
        assert kernel["pct_of_peak_compute"] >= 0
    assert any(k["flops"] > 0 for k in profile["kernels"])


def _remeasured_ratio(ctx) -> float:
    from edgecc.artifact.loader import load_artifact
    from edgecc.measure.profile import profile_artifact

    artifact = load_artifact(ctx.stage_dir)  # the compile closed its own when it finished
    try:
        return profile_artifact(ctx.scheduled, artifact, ctx.stage_dir / ctx.manifest["library"],
                                ctx.target.peak_gflops(), ctx.target.board.memory_bandwidth_gbs,
                                ctx.sample_inputs)["sum_over_end_to_end"]
    finally:
        artifact.close()
