"""A compile on this machine writes report.json (schema-valid), report.md and report.html with the energy
measured or plainly not, a per-kernel profile that adds up to the end-to-end latency, roofline placement
against the host's measured facts, and no figure above the roof without its reason."""

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
    RESULTS["model"] = edgecc.compile("tinybert-4", "host", out, seq_len=128, min_seconds=0.3, log=lambda *_: None)
    return out


def test_three_reports_and_schema(compiled):
    report = json.loads((compiled / "report.json").read_text())
    assert report["schema_version"] == SCHEMA_VERSION
    validate_report(report)
    assert (compiled / "report.md").stat().st_size > 0
    html = (compiled / "report.html").read_text()
    assert html.count("<img") >= 2  # per-kernel bars and roofline at least


def test_energy_is_measured_or_plainly_not(compiled):
    from edgecc.measure.energy import detect_meter

    report = json.loads((compiled / "report.json").read_text())
    energy = report["energy"]
    if detect_meter() is None:  # no meter here, and the host has no invented power figures to estimate from
        assert energy["kind"] == "not measured" and "no power meter" in energy["why"]
        assert report["target"]["board"]["tdp_watts"] is None
        assert "| Energy | not measured: no power meter" in (compiled / "report.md").read_text()
    else:
        assert energy["kind"] == "measured" and energy["joules_per_inference"] > 0


def test_the_reports_roof_is_the_hosts_measured_facts(compiled):
    from edgecc.targets import load_target

    report = json.loads((compiled / "report.json").read_text())
    board, profile = report["target"]["board"], report["profile"]
    now = json.loads(json.dumps(load_target("host").to_dict()["board"]))  # the cached measurement, read again
    if now["sources"]["memory_bandwidth_gbs"] == board["sources"]["memory_bandwidth_gbs"]:
        assert board == now
    else:  # measured again in between, once the machine was quieter: only ever faster
        assert now["memory_bandwidth_gbs"] >= board["memory_bandwidth_gbs"]
    assert profile["memory_bandwidth_gbs"] == board["memory_bandwidth_gbs"]
    assert profile["peak_gflops"] == board["peak_gflops"]["fp32"]
    assert "measured" in board["sources"]["memory_bandwidth_gbs"]
    assert board["sources"]["peak_gflops"].startswith(report["target"]["tvm_target"]["mcpu"])
    markdown = (compiled / "report.md").read_text()
    assert "How operations and bytes are counted" in markdown and "Where each figure comes from" in markdown


def test_kernel_times_add_up_and_each_has_a_roofline_place(compiled):
    profile = json.loads((compiled / "report.json").read_text())["profile"]
    assert profile["kernel_count"] >= 5 and not profile["skipped"]
    # kernels timed inside the model should account for the end-to-end time within 10%
    ratios = [profile["sum_over_end_to_end"]]
    # the machine is shared: when another job ran during the rounds, measure again
    for _ in range(3):
        if 0.90 <= ratios[-1] <= 1.10:
            break
        ratios.append(_remeasured_ratio(RESULTS["model"].context))
    assert 0.90 <= ratios[-1] <= 1.10, ratios
    totals = [k["total_ms"] for k in profile["kernels"]]
    assert totals == sorted(totals, reverse=True)
    for kernel in profile["kernels"]:
        assert kernel["bound"] in ("compute", "memory")
        assert kernel["bytes"] > 0 and kernel["achieved_gbs"] > 0
        assert kernel["pct_of_peak_compute"] >= 0
        if kernel["pct_of_roofline"] > 100:
            assert kernel["above_roof"], kernel  # never above the roof without saying why
    assert any(k["flops"] > 0 for k in profile["kernels"])
    lookup = next(k for k in profile["kernels"] if k["gathered"])  # the word embedding reads 128 rows, not 30522
    assert lookup["bytes"] < lookup["argument_bytes"] / 50


def _remeasured_ratio(ctx) -> float:
    from edgecc.artifact.loader import load_artifact
    from edgecc.measure.profile import profile_artifact
    from edgecc.measure.roofline import machine_from_board

    artifact = load_artifact(ctx.stage_dir)  # the compile closed its own when it finished
    try:
        return profile_artifact(
            ctx.scheduled,
            artifact,
            ctx.stage_dir / ctx.manifest["library"],
            ctx.sample_inputs,
            machine_from_board(ctx.target.board),
        )["sum_over_end_to_end"]
    finally:
        artifact.close()
