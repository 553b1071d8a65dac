"""bench/table.py's pure functions: ratios within a precision group, flagged rows, the CPU header."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from table import (  # noqa: E402  (bench/ is a folder of scripts)
    CpuSnapshot,
    Row,
    agreement,
    busy_seconds,
    header,
    machine_from_cpuinfo,
    others_cpu_share,
    render,
    with_ratios,
)

pytestmark = pytest.mark.fast


def _stats(median: float) -> dict:
    return {"median_ms": median, "p10_ms": median * 0.9, "p90_ms": median * 1.2, "cv": 0.05, "runs": 10}


def test_ratios_are_taken_within_model_and_precision_and_skip_wrong_or_untimed_rows():
    rows = [
        Row("m", "edgecc fp32", "fp32", _stats(8.0), error=1e-6, cosine=1.0),
        Row("m", "ONNX Runtime", "fp32", _stats(10.0), error=0.0, cosine=1.0),
        Row("m", "fast but wrong", "fp32", _stats(1.0), error=0.5, cosine=0.9),
        Row("m", "edgecc int8", "int8", _stats(6.0), error=0.01, cosine=0.999),
        Row("m", "ONNX Runtime int8", "int8", _stats(4.0), error=0.16, cosine=0.998),
        Row("m", "OpenVINO default (bf16)", "bf16", _stats(5.0), error=2e-3, cosine=0.9999),
        Row("m", "IREE", "fp32", reason="iree-compile failed: unsupported op"),
        Row("other", "ONNX Runtime", "fp32", _stats(2.0), error=0.0, cosine=1.0),
    ]
    ratio = {(r.model, r.runtime): r.ratio for r in with_ratios(rows)}
    assert ratio[("m", "edgecc fp32")] == pytest.approx(1.0)
    assert ratio[("m", "ONNX Runtime")] == pytest.approx(10.0 / 8.0)
    assert ratio[("m", "fast but wrong")] is None  # flagged, not the fastest
    assert ratio[("m", "edgecc int8")] == pytest.approx(1.5)
    assert ratio[("m", "ONNX Runtime int8")] == pytest.approx(1.0)
    assert ratio[("m", "OpenVINO default (bf16)")] == pytest.approx(1.0)  # its own group
    assert ratio[("m", "IREE")] is None
    assert ratio[("other", "ONNX Runtime")] == pytest.approx(1.0)  # another model is another group

    table = render(rows)
    assert "| m | IREE | fp32 | — | — | — | — | not run: iree-compile failed: unsupported op |" in table
    assert "| 1.6e-01 | 0.99800 |" in table
    assert "not ranked: wrong output" in table.splitlines()[4]
    assert "| **1.00x** |" in table.splitlines()[2]


def test_fp32_is_judged_by_its_worst_element_reduced_precisions_by_cosine():
    assert Row("m", "a", "int8", _stats(1.0), error=0.2, cosine=0.995).ranked
    assert not Row("m", "a", "int8", _stats(1.0), error=0.2, cosine=0.95).ranked
    assert not Row("m", "a", "fp32", _stats(1.0), error=0.05, cosine=0.9999).ranked
    assert not Row("m", "a", "fp32", _stats(1.0), error=float("inf"), cosine=0.0).ranked
    assert Row("m", "a", "fp32", _stats(1.0)).ranked  # no reference output: timed, nothing to flag


def test_agreement_of_outputs():
    reference = np.array([[1.0, -2.0, 4.0]])
    error, cosine = agreement(reference + [[0.0, 0.0, 0.004]], reference)
    assert error == pytest.approx(0.001) and cosine == pytest.approx(1.0, abs=1e-6)
    assert agreement(-reference, reference)[1] == pytest.approx(-1.0)
    assert agreement(np.ones((1, 2)), reference) == (float("inf"), 0.0)  # another shape
    assert agreement(np.array([[np.nan, 0.0, 0.0]]), reference) == (float("inf"), 0.0)


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B45
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9B45
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""


def test_cpu_header_names_the_cpu_its_llvm_name_and_the_flags_that_matter():
    machine = machine_from_cpuinfo(CPUINFO, "znver5")
    assert machine.cpu == "AMD EPYC 9B45" and machine.cores == 2
    assert machine.flags == ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")  # no AMX here
    text = header(
        machine,
        threads=2,
        batch=1,
        seq_len=128,
        when="2026-12-01 21:00 UTC",
        versions={"ONNX Runtime": "1.32.0"},
        others_cpu=0.25,
    )
    first = text.splitlines()[0]
    for part in ("AMD EPYC 9B45", "`znver5`", "avx512_bf16", "2 threads", "batch 1", "seq len 128", "2026-12-01"):
        assert part in first
    assert "25% of the CPUs" in text and "ONNX Runtime 1.32.0" in text
    assert machine_from_cpuinfo("", "generic").cpu == "unknown CPU"


def test_other_processes_cpu_share_subtracts_our_own_time():
    assert busy_seconds("cpu  100 0 50 800 10 5 5 40\ncpu0 1 2 3\n", 100.0) == pytest.approx(2.0)
    start, end = CpuSnapshot(0.0, 10.0, 1.0), CpuSnapshot(10.0, 25.0, 6.0)  # 15 s busy, 5 of them ours
    assert others_cpu_share(start, end, cores=2) == pytest.approx(0.5)
    assert others_cpu_share(start, CpuSnapshot(10.0, 12.0, 6.0), cores=2) == 0.0  # never negative
