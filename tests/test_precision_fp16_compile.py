"""--precision fp16 through the whole compile on this x86 host: no FP16 arithmetic here, so weights
are stored FP16 and computed in FP32, and the compile says so in one line and in report.json."""

import json

import pytest

import edgecc
from edgecc.targets import load_target


def test_x86_host_fp16_compile_says_storage_only_in_one_line_and_in_the_report(held_out_bert_onnx, tmp_path):
    if load_target("host").arch not in ("x86_64", "x86"):
        pytest.skip("this host is not an x86 CPU")
    lines = []
    result = edgecc.compile(
        held_out_bert_onnx,
        "host",
        tmp_path / "fp16",
        seq_len=24,
        preset="quick",
        precision="fp16",
        measure=False,
        log=lines.append,
    )
    said = [line.strip() for line in lines if "FP16 storage only" in line]
    assert len(said) == 1 and "x86 CPU" in said[0] and "no FP16 arithmetic" in said[0], lines
    stats = json.loads((tmp_path / "fp16" / "report.json").read_text())["passes"]["cast_matmuls_to_fp16"]
    assert stats["fp16_math"] is False and stats["instruction"] is None and stats["fp16_math_layers"] == 0
    assert "x86 CPU" in stats["arithmetic"] and stats["weights"] == "float16"
    markdown = (tmp_path / "fp16" / "report.md").read_text()
    assert any(line.startswith("| arithmetic") and "no FP16 arithmetic" in line for line in markdown.splitlines())
    assert result.report["verification"]["status"] == "passed"
