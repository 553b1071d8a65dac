"""Done criterion: the Raspberry Pi 5 INT8 build (sdot) and the Snapdragon 8 Gen 2 INT8 build (i8mm
smmla, sdot where the smmla tile does not fit) compute the right numbers on the emulated aarch64 board
(QEMU + TVM RPC): close to the FP32 model in ONNX Runtime on the host."""

import shutil
import subprocess

import pytest

import edgecc
from edgecc.measure.accuracy import cosine_rows

from fixtures_models import onnxruntime_outputs, token_inputs

SEQ, VOCAB = 24, 777


def _compile_and_check_on_board(model, board, folder, target):
    """Compile `model` INT8 for `target`, verified on `board`; run it there again and compare with ONNX
    Runtime FP32. Returns (report, disassembly of model.so or "" without the cross objdump)."""
    compiled = edgecc.compile(
        str(model),
        target=target,
        output=str(folder),
        seq_len=SEQ,
        precision="int8",
        rpc=board.address,
        measure=False,
        log=lambda *_: None,
    )
    assert compiled.report["verification"]["where"] == board.address
    tool = shutil.which("aarch64-linux-gnu-objdump")
    listing = ""
    if tool:
        listing = subprocess.run([tool, "-d", str(folder / "model.so")], capture_output=True, text=True).stdout

    inputs = token_inputs(SEQ, VOCAB)
    from edgecc.artifact.loader import load_artifact  # the compile closed its session: load again

    loaded = load_artifact(folder, rpc=board.address)
    try:
        actual = loaded.run(inputs)["last_hidden_state"]
    finally:
        loaded.close()
    expected = onnxruntime_outputs(model, inputs)["last_hidden_state"]
    cosines = cosine_rows(actual[0], expected[0])
    assert cosines.min() > 0.99, cosines.min()
    assert compiled.report["accuracy"]["mean_cosine"] > 0.99
    return compiled.report, listing


@pytest.mark.slow  # ~2 min: a cross compile, then the model runs under QEMU
def test_pi5_int8_build_uses_sdot_and_verifies_on_the_emulated_board(held_out_bert_onnx, emulated_board, tmp_path):
    report, listing = _compile_and_check_on_board(
        held_out_bert_onnx, emulated_board, tmp_path / "pi5-int8", "raspberry-pi-5"
    )
    stats = report["accuracy"]["int8"]
    assert stats["instruction"] == "sdot (dotprod)" and stats["int8_math_layers"] == 6 and not stats["fallbacks"]
    if listing:
        assert "sdot\tv" in listing and "smmla" not in listing


@pytest.mark.slow  # ~5 s once the board is up (~25 s to start); QEMU's default CPU model has i8mm
def test_snapdragon_int8_build_uses_smmla_and_verifies_on_the_emulated_board(
    held_out_bert_onnx, emulated_board, tmp_path
):
    report, listing = _compile_and_check_on_board(
        held_out_bert_onnx, emulated_board, tmp_path / "sd8g2-int8", "snapdragon-8-gen-2-cpu"
    )
    stats = report["accuracy"]["int8"]
    assert stats["instruction"] == "smmla (i8mm)" and stats["int8_math_layers"] == 6 and not stats["fallbacks"]
    # FFN up (K=48) on smmla; FFN down (K=100, not a multiple of 8) on sdot, listed and counted by rule
    assert stats["fallback_instruction"] == "sdot (dotprod)"
    assert [f["reason"] for f in stats["instruction_fallbacks"]] == ["K=100 is not a multiple of 8"] * 3
    by_source = report["schedules"]["by_source"]
    assert by_source["rule:matmul-mmla"] >= 1 and by_source["rule:matmul-dot"] >= 1
    if listing:
        assert "smmla\tv" in listing and "sdot\tv" in listing
