"""report.json schema checks, and report.md / report.html rendered from hand-made reports (no compile
needed): readable tables, the one-screen summary, plots, like-with-like builds, older schema versions."""

import base64
import copy
import io
import json
import re

import pytest

from edgecc.errors import EdgeccError
from edgecc.reports import render_reports
from edgecc.reports.schema import SCHEMA_VERSION, report_errors, validate_report


def _report(name="bert", median_ms=2.0, library_bytes=1_000_000, drop=0.0, precision="fp32"):
    kernels = [
        {
            "name": n,
            "calls": c,
            "ms_per_call": ms,
            "total_ms": ms * c,
            "flops": f,
            "bytes": b,
            "arithmetic_intensity": f / b,
            "achieved_gflops": f / (ms / 1e3) / 1e9,
            "achieved_gbs": b / (ms / 1e3) / 1e9,
            "bound": bound,
            "share": 0.5,
            "pct_of_roofline": 10.0,
            "pct_of_peak_compute": 1.0,
        }
        for n, c, ms, f, b, bound in (
            ("matmul", 4, 0.3, 4e6, 2e5, "compute"),
            ("layer_norm", 2, 0.2, 1e4, 1e5, "memory"),
        )
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": "tiny", "source": "tiny.onnx"},
        "target": {"name": "host", "description": "this machine"},
        "options": {"precision": precision, "batch": 1, "seq_len": 128},
        "compile": {"total_seconds": 3.0, "steps": []},
        "artifact": {
            "library": "model.so",
            "files": {"model.so": {"bytes": library_bytes}},
            "library_bytes": library_bytes,
        },
        "verification": {"status": "passed", "reason": "ok"},
        "latency": {
            "edgecc": {
                "runs": 10,
                "min_ms": 1.9,
                "median_ms": median_ms,
                "mean_ms": 2.0,
                "p90_ms": 2.1,
                "p99_ms": 2.2,
                "std_ms": 0.05,
                "cv": 0.025,
            }
        },
        "energy": {
            "kind": "estimated",
            "meter": "estimate from target file",
            "joules_per_inference": 0.05,
            "joules_per_inference_total": 0.07,
            "avg_watts": 35.0,
            "peak_watts": 35.0,
            "idle_watts": 10.0,
        },
        "profile": {
            "kernels": kernels,
            "sum_ms": 1.6,
            "end_to_end_ms": 1.8,
            "sum_over_end_to_end": 1.6 / 1.8,
            "kernel_count": 2,
            "skipped": [],
            "peak_gflops": 100.0,
            "memory_bandwidth_gbs": 20.0,
        },
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
    assert report_errors(broken) == [
        "latency.edgecc.p99_ms is missing",
        "energy.kind must be 'measured', 'estimated' or 'not measured'",
    ]
    with pytest.raises(
        EdgeccError, match=rf"^report does not match report schema v{SCHEMA_VERSION}: latency.edgecc.p99"
    ):
        validate_report(broken)
    with pytest.raises(EdgeccError, match=f"schema_version 99 is not {SCHEMA_VERSION}"):
        validate_report({**report, "schema_version": 99})
    assert report_errors({**report, "energy": {"kind": "not measured"}}) == ["energy.why is missing"]


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"src='data:image/png;base64,([^']+)'", html)]


def test_html_has_every_plot_and_estimated_label(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    variants = {
        "fp32": _report(),
        "int8": _report(median_ms=1.2, library_bytes=300_000, drop=0.01, precision="int8"),
        "fp16": _report(median_ms=1.6, library_bytes=500_000, drop=0.001, precision="fp16"),
    }
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
    assert "ESTIMATED" in markdown and "| `matmul` | 4 | 1.200 |" in markdown
    # every other build is comparable here (same model, shape and target), and listed by its folder
    assert "| int8 | int8 |" in markdown and "| fp16 | fp16 |" in markdown


def test_single_variant_has_no_pareto_chart(tmp_path):
    pytest.importorskip("matplotlib")
    report = _report()
    report["tuning"] = {}
    render_reports(tmp_path, report)
    html = (tmp_path / "report.html").read_text()
    assert "alt='Latency / size / accuracy'" not in html and "alt='Tuning curve'" not in html
    assert len(_images(html)) == 2


def _no_raw_dumps(text: str) -> None:
    assert "```" not in text and '{"' not in text and "{'" not in text, "raw JSON or code block in the report"


def test_markdown_is_tables_and_the_summary_comes_first(tmp_path):
    report = _report()
    report["accuracy"] = {
        "accuracy_drop": 0.004,
        "method": "model outputs vs the FP32 ONNX model",
        "samples": 4,
        "int8": {"layers_quantized": 6, "skipped": ["head"]},
        "layers": [{"name": "dense_0", "precision": "int8"}, {"name": "head", "precision": "fp32"}],
    }
    report["tuning"] = {
        "run": {"curve": [[8, 3.0]], "trials_run": 24, "wall_seconds": 60.0, "stopped_by": "trials"},
        "applied": {"kernels": 12, "tuned": 9, "default": 3, "records_for_target": 40},
        "compared_with_default": {
            "compared": 9,
            "kept_default": ["a", "b", "c", "d", "e", "f"],
            "kernels": [{"name": "a", "tuned_us": 9.0, "default_us": 8.0, "kept": "default"}],
        },
    }
    report["passes"] = {"fuse_attention": {"attentions_fused": 4}}
    report["schedules"] = {
        "kernels": 13,
        "by_source": {"rule:matmul": 4, "tuned": 3},
        "unscheduled": [],
        "fallbacks": ["odd_kernel"],
        "failures": {"k": ["rule:conv: ValueError: no"]},
    }
    render_reports(tmp_path, report)
    markdown = (tmp_path / "report.md").read_text()
    _no_raw_dumps(markdown)
    assert markdown.index("## Summary") < markdown.index("## Latency") < markdown.index("## Per-kernel profile")
    summary = markdown.split("## Summary")[1].split("\n## ")[0]
    assert "tuned 3 of 12 kernels (9 tried, 6 lost to the default schedule and were dropped)" in summary
    assert "Slowest kernels" in summary and "`matmul`" in summary and "compute-bound at" in summary
    for row in (
        "| int8.layers_quantized | 6 |",
        "| dense_0 | int8 |",
        "| `fuse_attention` | attentions fused: 4 |",
        "| `rule:matmul` | 4 |",
        "| `k` | rule:conv: ValueError: no |",
    ):
        assert row in markdown, row
    html = (tmp_path / "report.html").read_text()
    _no_raw_dumps(html)
    assert "<pre" not in html and "| matmul" not in html and html.count("<table") >= 8


def test_not_measured_energy_and_above_roof_reasons_are_shown(tmp_path):
    report = _report()
    report["energy"] = {"kind": "not measured", "why": "no power meter readable where the model ran"}
    kernel = report["profile"]["kernels"][1]
    kernel["above_roof"] = ["cache-resident: its 0.1 MB fit in the 34 MB of on-chip cache"]
    render_reports(tmp_path, report)
    markdown = (tmp_path / "report.md").read_text()
    assert "| Energy | not measured: no power meter readable where the model ran |" in markdown
    assert "`layer_norm`: cache-resident: its 0.1 MB fit" in markdown


def test_other_shapes_are_listed_not_plotted_and_staging_folders_never_named(tmp_path):
    pytest.importorskip("matplotlib")
    same, longer = _report(median_ms=1.5), _report(median_ms=4.0)
    longer["options"] = {**longer["options"], "seq_len": 256}
    for name, report in {"same-shape": same, "longer": longer, ".tiny.staging-abc": _report()}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    stage = tmp_path / ".mine.staging-xyz"  # what a compile renders into before it renames the folder
    stage.mkdir()
    mine = {**_report(), "options": {**_report()["options"], "output": str(tmp_path / "mine")}}
    render_reports(stage, mine)
    markdown = (stage / "report.md").read_text()
    builds = markdown.split("## Other builds of this model")[1]
    assert "**mine** (this build)" in builds and "| same-shape |" in builds and "comparable" in builds
    assert "| longer |" in builds and "sequence length 256" in builds
    assert "staging" not in markdown
    html = (stage / "report.html").read_text()
    assert "alt='Latency / size / accuracy'" in html and "staging" not in html


def test_a_version_1_report_still_renders_and_says_what_its_figures_meant(tmp_path):
    report = _report()
    report["schema_version"] = 1
    report["profile"]["kernels"][0]["achieved_gbs"] = 4000.0  # v1 counted a gather's whole table
    (tmp_path / "report.json").write_text(json.dumps(report))
    import edgecc

    edgecc.report(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "schema v1" in markdown and "whole argument buffers" in markdown
    assert (tmp_path / "report.html").stat().st_size > 0


def test_builds_with_other_input_shapes_are_not_peers(tmp_path):
    mine, other = _report(), _report(median_ms=9.0)
    mine["model"]["inputs"] = [{"name": "pixel_values", "shape": [1, 3, 224, 224], "dtype": "float32"}]
    other["model"]["inputs"] = [{"name": "pixel_values", "shape": [1, 3, 256, 256], "dtype": "float32"}]
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "report.json").write_text(json.dumps(other))
    (tmp_path / "mine").mkdir()
    render_reports(tmp_path / "mine", mine)
    markdown = (tmp_path / "mine" / "report.md").read_text()
    assert "inputs `pixel_values` 1x3x224x224 float32" in markdown  # the headline names the shapes compiled for
    assert "| big | fp32 | 9 | 1 | 0 | load unknown | input shapes pixel_values 1x3x256x256 |" in markdown


def test_precision_passes_get_their_own_tables(tmp_path):
    report = _report()
    report["passes"] = {
        "fuse_attention": {"attentions_fused": 4},
        "quantize_dense_layers_int8": {
            "instruction": "vpdpbusd (avx512vnni)",
            "weights": "per-channel symmetric int8",
            "activations": "dynamic per-row",
            "int8_layers": ["a", "b"],
            "int8_math_layers": 2,
            "fp32_layers": 1,
            "fallbacks": [
                {"layer": "head", "key": "k", "shape": [384, 2], "reason": "INT8 timed slower than FP32 here"}
            ],
            "timings": [
                {"input_shape": [128, 384], "n": 384, "layers": ["a"], "fp32_us": 90.0, "int8_us": 40.0, "kept": "int8"}
            ],
        },
    }
    render_reports(tmp_path, report)
    markdown = (tmp_path / "report.md").read_text()
    _no_raw_dumps(markdown)
    assert "| `quantize_dense_layers_int8` | see Precision below |" in markdown
    precision = markdown.split("## Precision")[1].split("\n## ")[0]
    assert "| instruction | vpdpbusd (avx512vnni) |" in precision and "| INT8-math layers | 2 |" in precision
    assert "| head | 384x2 | INT8 timed slower than FP32 here |" in precision
    assert "| 128x384 | 384 | 1 | 90.0 | 40.0 | int8 |" in precision


def test_layers_on_the_fallback_instruction_get_their_own_table(tmp_path):
    report = _report()
    layer = {"layer": "dense_2", "key": "k", "shape": [100, 48], "reason": "K=100 is not a multiple of 8"}
    report["passes"] = {
        "quantize_dense_layers_int8": {
            "instruction": "smmla (i8mm)",
            "int8_math_layers": 2,
            "fallbacks": [],
            "instruction_fallbacks": [layer],
            "fallback_instruction": "sdot (dotprod)",
        },
    }
    render_reports(tmp_path, report)
    precision = (tmp_path / "report.md").read_text().split("## Precision")[1].split("\n## ")[0]
    assert "| instruction | smmla (i8mm) |" in precision and "layer kept FP32" not in precision
    assert "layer on sdot (dotprod)" in precision and "| dense_2 | 100x48 | K=100 is not a multiple of 8 |" in precision


def _timed(report: dict, load: float, cores: int = 2) -> dict:
    return {**report, "environment": {"machine": "x86_64", "load_average": [load, load, load], "cpu_count": cores}}


def test_the_pareto_front_joins_only_undominated_builds_timed_under_the_same_load(tmp_path):
    from edgecc.reports.plots import pareto
    from edgecc.reports.siblings import PLANE, WITH_ACCURACY, Build, pareto_front, same_load

    mine = Build("mine", _timed(_report(median_ms=2.0, library_bytes=4_000_000), 0.2))
    faster = Build("faster", _timed(_report(median_ms=1.0, library_bytes=1_000_000, drop=0.01), 0.3))
    dominated = Build("dominated", _timed(_report(median_ms=3.0, library_bytes=5_000_000), 0.1))
    twin = Build("twin", _timed(_report(median_ms=1.0, library_bytes=1_000_000, drop=0.01), 0.4))
    loaded = Build("loaded", _timed(_report(median_ms=0.5, library_bytes=500_000), 1.9))
    points = [mine, faster, dominated, twin, loaded]
    peers, others = same_load(points)
    assert [p.name for p in others] == ["loaded"] and loaded.load == "loaded" and mine.load == "idle"
    # in the plotted plane `faster` (and its equal twin) beat `mine` and `dominated`; the loaded build is off
    assert [p.name for p in pareto_front(peers, PLANE)] == ["faster", "twin"]
    # counting accuracy, `mine` (no drop) trades speed and size for accuracy; `dominated` never makes it
    assert {p.name for p in pareto_front(peers, WITH_ACCURACY)} == {"faster", "twin", "mine"}
    pytest.importorskip("matplotlib")
    assert pareto(points)  # draws mixed loads without failing


def test_other_builds_say_the_load_they_were_timed_under(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "report.json").write_text(json.dumps(_timed(_report(median_ms=1.0), 3.0)))
    (tmp_path / "mine").mkdir()
    render_reports(tmp_path / "mine", _timed(_report(), 0.1))
    builds = (tmp_path / "mine" / "report.md").read_text().split("## Other builds of this model")[1]
    assert "idle (1-min load 0.1 on 2 cores)" in builds
    assert "| busy | fp32 | 1 | 1 | 0 | loaded (1-min load 3.0 on 2 cores) | comparable, but timed loaded" in builds
