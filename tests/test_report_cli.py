"""`edgecc report OUT` and `edgecc compare OUT_A OUT_B` on a real compiled artifact."""

import json
import shutil

import pytest
from click.testing import CliRunner

import edgecc
from edgecc.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def artifact(held_out_distilbert_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "distil"
    edgecc.compile(held_out_distilbert_onnx, "host", out, seq_len=20, min_seconds=0.2, log=lambda *_: None)
    return out


def test_report_rerenders_md_and_html(artifact):
    (artifact / "report.md").unlink()
    (artifact / "report.html").unlink()
    result = invoke("report", artifact)
    assert result.exit_code == 0, result.output
    assert "## Per-kernel profile" in (artifact / "report.md").read_text()
    assert "data:image/png;base64," in (artifact / "report.html").read_text()


def test_compare_shows_changes(artifact, tmp_path):
    other = tmp_path / "distil-b"
    shutil.copytree(artifact, other)
    report = json.loads((other / "report.json").read_text())
    report["latency"]["edgecc"]["median_ms"] *= 0.5
    report["artifact"]["library_bytes"] = report["artifact"]["library_bytes"] * 2
    top = report["profile"]["kernels"][0]
    top["total_ms"] += 1.0
    (other / "report.json").write_text(json.dumps(report))
    result = invoke("compare", "--stored", artifact, other)
    assert result.exit_code == 0, result.output
    assert "Not re-measured: --stored was given" in result.output and "different compiles" in result.output
    latency_line = next(line for line in result.output.splitlines() if line.startswith("median latency"))
    assert "-50.0%" in latency_line
    size_line = next(line for line in result.output.splitlines() if line.startswith("library size"))
    assert "+100.0%" in size_line
    kernels = result.output.split("Kernels that changed most")[1].splitlines()
    assert top["name"] in kernels[3]  # header, rule, then the kernel that moved most
    assert "energy kind" in result.output


def test_compare_remeasures_both_side_by_side_when_they_run_here(artifact, tmp_path):
    other = tmp_path / "distil-copy"
    shutil.copytree(artifact, other)
    report = json.loads((other / "report.json").read_text())
    report["latency"]["edgecc"]["median_ms"] *= 0.5  # a stored figure from another (quieter) run
    (other / "report.json").write_text(json.dumps(report))
    result = invoke("compare", "--seconds", "0.3", artifact, other)
    assert result.exit_code == 0, result.output
    assert "Re-measured side by side on this machine" in result.output
    ratio_line = next(line for line in result.output.splitlines() if line.startswith("B/A: "))
    ratio = float(ratio_line.split()[1].rstrip("x"))
    assert 0.5 < ratio < 2.0  # the same library twice: nothing like the stored -50 %
    assert "Stored figures, from each compile's own report" in result.output


def test_compare_of_different_workloads_says_so(artifact, tmp_path):
    other = tmp_path / "distil-b4"
    shutil.copytree(artifact, other)
    report = json.loads((other / "report.json").read_text())
    report["options"]["batch"] = 4
    (other / "report.json").write_text(json.dumps(report))
    result = invoke("compare", artifact, other)
    assert result.exit_code == 0, result.output
    assert "different workloads (batch 1 vs 4)" in result.output and "Not re-measured" in result.output


def test_bad_folders_give_one_line_errors(tmp_path):
    result = invoke("report", tmp_path / "missing")
    assert result.exit_code == 2 and "no report.json" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "report.json").write_text("{not json")
    result = invoke("compare", bad, bad)
    assert result.exit_code == 2 and "not valid JSON" in result.output
    (bad / "report.json").write_text(json.dumps({"schema_version": 1}))
    result = invoke("report", bad)
    assert result.exit_code == 2 and "schema" in result.output.lower()
