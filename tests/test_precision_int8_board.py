"""Done criterion: the Raspberry Pi 5 INT8 build (sdot) computes the right numbers on the emulated
aarch64 board (QEMU + TVM RPC): close to the FP32 model in ONNX Runtime on the host."""

import shutil
import subprocess

import pytest

import edgecc
from edgecc.measure.accuracy import cosine_rows

from fixtures_models import onnxruntime_outputs, token_inputs

SEQ, VOCAB = 24, 777


@pytest.mark.slow  # ~2 min: a cross compile, then the model runs under QEMU
def test_pi5_int8_build_uses_sdot_and_verifies_on_the_emulated_board(held_out_bert_onnx, emulated_board, tmp_path):
    out = tmp_path / "pi5-int8"
    compiled = edgecc.compile(
        str(held_out_bert_onnx),
        target="raspberry-pi-5",
        output=str(out),
        seq_len=SEQ,
        precision="int8",
        rpc=emulated_board.address,
        measure=False,
        log=lambda *_: None,
    )
    stats = compiled.report["accuracy"]["int8"]
    assert stats["instruction"] == "sdot (dotprod)" and stats["int8_math_layers"] == 6 and not stats["fallbacks"]
    assert compiled.report["verification"]["where"] == emulated_board.address
    tool = shutil.which("aarch64-linux-gnu-objdump")
    if tool:
        listing = subprocess.run([tool, "-d", str(out / "model.so")], capture_output=True, text=True).stdout
        assert "sdot\tv" in listing

    inputs = token_inputs(SEQ, VOCAB)
    from edgecc.artifact.loader import load_artifact  # the compile closed its session: load again

    board = load_artifact(out, rpc=emulated_board.address)
    try:
        actual = board.run(inputs)["last_hidden_state"]
    finally:
        board.close()
    expected = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
    cosines = cosine_rows(actual[0], expected[0])
    assert cosines.min() > 0.99, cosines.min()
    assert compiled.report["accuracy"]["mean_cosine"] > 0.99
