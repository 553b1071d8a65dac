"""Done criteria: a held-out BERT compiled for raspberry-pi-5 runs on the emulated aarch64 board
(directly and through a tracker) and matches ONNX Runtime on the host."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import edgecc
from edgecc.cli import main as cli

from fixtures_models import onnxruntime_outputs, token_inputs

pytestmark = pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-gcc")


SEQ, VOCAB = 24, 777


def _cli_run(artifact, inputs_file, outputs_file, *board_args):
    result = CliRunner().invoke(
        cli, ["run", str(artifact), "--inputs", str(inputs_file), "--outputs", str(outputs_file), *board_args]
    )
    assert result.exit_code == 0, result.output
    return dict(np.load(outputs_file))


@pytest.mark.slow  # ~3 min: compile, then the model runs under QEMU three times
def test_held_out_bert_on_emulated_board_and_through_tracker(
    held_out_bert_onnx, emulated_board, board_tracker, tmp_path
):
    out = tmp_path / "pi5"
    compiled = edgecc.compile(
        str(held_out_bert_onnx),
        target="raspberry-pi-5",
        output=str(out),
        seq_len=SEQ,
        batch=1,
        rpc=emulated_board.address,
        log=lambda *_: None,
    )
    verification = compiled.report["verification"]
    assert verification["status"] == "passed", verification
    assert verification["where"] == emulated_board.address
    library = out / compiled.manifest["library"]
    assert library.read_bytes()[:4] == b"\x7fELF" and library.read_bytes()[18] == 0xB7  # e_machine = AArch64

    inputs = token_inputs(SEQ, VOCAB)
    np.savez(tmp_path / "in.npz", **inputs)
    expected = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]

    direct = _cli_run(out, tmp_path / "in.npz", tmp_path / "direct.npz", "--rpc", emulated_board.address)
    np.testing.assert_allclose(direct["last_hidden_state"], expected, atol=1e-4, rtol=1e-4)

    tracker, key = board_tracker
    tracked = _cli_run(out, tmp_path / "in.npz", tmp_path / "tracked.npz", "--tracker", tracker, "--key", key)
    np.testing.assert_allclose(tracked["last_hidden_state"], expected, atol=1e-4, rtol=1e-4)
    assert np.array_equal(tracked["last_hidden_state"], direct["last_hidden_state"])  # same board code, same bits

    # Timings from the emulated board carry the label wherever they are reported.
    report = json.loads((out / "report.json").read_text())
    latency = report.get("latency") or {}
    if latency:
        assert latency.get("emulated") is True
        # and nothing is computed from them: no energy, no roofline placement
        assert report["energy"]["kind"] == "not measured" and "emulated" in report["energy"]["why"]
        profile = report.get("profile") or {}
        assert all("pct_of_roofline" not in k for k in profile.get("kernels", []))


@pytest.mark.slow  # minutes: a real-size vision model compiled for the board, then run under QEMU
def test_mobilevit_s_nhwc_convolutions_verify_on_emulated_board(emulated_board, tmp_path):
    """The NHWC convolution schedules at NEON's 4 lanes (and the zero-padded channels, had any count
    needed them) compute on an aarch64 board what ONNX Runtime computes on the host."""
    compiled = edgecc.compile(
        "mobilevit-s",
        target="raspberry-pi-5",
        output=str(tmp_path / "mvit"),
        rpc=emulated_board.address,
        measure=False,
        log=lambda *_: None,
    )
    verification = compiled.report["verification"]
    assert verification["status"] == "passed", verification
    assert verification["where"] == emulated_board.address
    schedules = compiled.report["schedules"]
    assert schedules["unscheduled"] == [] and schedules["fallbacks"] == []
    assert schedules["by_source"].get("rule:conv2d-nhwc-register-tile", 0) >= 20
