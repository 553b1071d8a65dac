"""report.json schema checks and report.html plots from hand-made reports (no compile needed)."""

import base64
import copy
import io
import json
import re

import pytest

from edgecc.errors import EdgeccError
from edgecc.reports import render_reports
from edgecc.reports.schema import SCHEMA_VERSION, report_errors, validate_report


def _report(name="bert", median_ms=2.0, library_bytes=1_000_000, drop=0.0):
    kernels = [{"name": n, "calls": c, "ms_per_call": ms, "total_ms": ms * c, "flops": f, "bytes": b,
                "arithmetic_intensity": f / b, "achieved_gflops": f / (ms / 1e3) / 1e9,
                "achieved_gbs": b / (ms / 1e3) / 1e9, "bound": bound, "share": 0.5, "pct_of_roofline": 10.0,
                "pct_of_peak_compute": 1.0}
               for n, c, ms, f, b, bound in (("matmul", 4, 0.3, 4e6, 2e5, "compute"),
                                             ("layer_norm", 2, 0.2, 1e4, 1e5, "memory"))]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": "tiny", "source": "tiny.onnx"},
        "target": {"name": "host", "description": "this machine"},
        "options": {"precision": "fp32", "batch": 1},
        "compile": {"total_seconds": 3.0, "steps": []},
        "artifact": {"library": "model.so", "files": {"model.so": {"bytes": library_bytes}},
                     "library_bytes": library_bytes},
        "verification": {"status": "passed", "reason": "ok"},
        "latency": {"edgecc": {"runs": 10, "min_ms": 1.9, "median_ms": median_ms, "mean_ms": 2.0, "p90_ms": 2.1,
                               "p99_ms": 2.2, "std_ms": 0.05, "cv": 0.025}},
        "energy": {"kind": "estimated", "meter": "estimate from target file", "joules_per_inference": 0.05,
                   "joules_per_inference_total": 0.07, "avg_watts": 35.0, "peak_watts": 35.0, "idle_watts": 10.0},
        "profile": {"kernels": kernels, "sum_ms": 1.6, "end_to_end_ms": 1.8, "sum_over_end_to_end": 1.6 / 1.8,
                    "kernel_count": 2, "skipped": [], "peak_gflops": 100.0, "memory_bandwidth_gbs": 20.0},
        "tuning": {"run": {"curve": [[8, 3.0], [16, 2.5], [24, 2.4]]}},
        "accuracy": {"accuracy_drop": drop},
    }


def test_valid_report_passes_and_each_break_is_named():
    report = _report()
    assert validate_report(report) is report
    broken = copy.deepcopy(report)
    del broken["latency"]["edgecc"]["p99_ms"]
    broken["energy"]["kind"] = "guessed"
    del broken["model"]["name"]
    assert report_errors(broken) == ["model.name is missing"]  # structure first, then section contents
    broken["model"]["name"] = "tiny"
    assert report_errors(broken) == ["latency.edgecc.p99_ms is missing", "energy.kind must be 'measured' or 'estimated'"]
    with pytest.raises(EdgeccError, match=r"^report does not match report schema v1: latency.edgecc.p99_ms"):
        validate_report(broken)
    with pytest.raises(EdgeccError, match="schema_version 99 is not 1"):
        validate_report({**report, "schema_version": 99})


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"src='data:image/png;base64,([^']+)'", html)]


def test_html_has_every_plot_and_estimated_label(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    variants = {"fp32": _report(), "int8": _report(median_ms=1.2, library_bytes=300_000, drop=0.01),
                "fp16": _report(median_ms=1.6, library_bytes=500_000, drop=0.001)}
    for name, report in variants.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    render_reports(tmp_path / "fp32", variants["fp32"])
    html = (tmp_path / "fp32" / "report.html").read_text()
    for title in ("Tuning curve", "Per-kernel time", "Roofline", "Latency / size / accuracy"):
        assert f"alt='{title}'" in html
    images = _images(html)
    assert len(images) == 4
    for png in images:
        pixels = mpimg.imread(io.BytesIO(png))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400 and pixels.std() > 0.01  # decodable, not blank
    assert "ESTIMATED" in html
    markdown = (tmp_path / "fp32" / "report.md").read_text()
    assert "ESTIMATED" in markdown and "| matmul | 4 | 1.200 |" in markdown


def test_single_variant_has_no_pareto_chart(tmp_path):
    pytest.importorskip("matplotlib")
    report = _report()
    report["tuning"] = {}
    render_reports(tmp_path, report)
    html = (tmp_path / "report.html").read_text()
    assert "alt='Latency / size / accuracy'" not in html and "alt='Tuning curve'" not in html
    assert len(_images(html)) == 2
