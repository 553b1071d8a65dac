"""FP16 arithmetic on the Raspberry Pi 5 (aarch64 +fullfp16), checked on the emulated board (QEMU +
TVM RPC): the dense kernel's numbers are exactly those of FP16 fused multiply-adds in K blocks summed
in FP32, and a compiled BERT is close to the FP32 model in ONNX Runtime. Emulated timings say
nothing about the board's speed; nothing here times anything."""

import shutil
import subprocess

import numpy as np
import pytest

import edgecc
from edgecc.measure.accuracy import cosine_rows
from edgecc.targets import load_target

from fixtures_models import onnxruntime_outputs, token_inputs
from fixtures_precision import blocked_fp16_reference, fp16_dense_kernel, schedule_fp16

pytestmark = pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-g++")
PI5 = load_target("raspberry-pi-5")
SEQ, VOCAB = 24, 777


@pytest.mark.slow  # ~1 min: the board starts under QEMU
def test_fp16_kernel_on_the_board_is_fp16_arithmetic_in_k_blocks(emulated_board, tmp_path):
    import tvm
    from tvm.support import cc

    from edgecc.remote.session import load_remote_module, open_session
    from edgecc.schedules.matmul_fp16 import k_block_for
    from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array

    m, k, n = 16, 96, 64
    scheduled = schedule_fp16(fp16_dense_kernel(m, k, n), PI5)
    ((_, n_axis, tile),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=PI5.tvm())
    path = tmp_path / "fp16_dense.so"
    lib.export_library(str(path), fcompile=cc.cross_compiler(PI5.toolchain.require()))

    rng = np.random.default_rng(3)
    a = rng.standard_normal((m, k)).astype(np.float16)
    w = rng.standard_normal((k, n)).astype(np.float16)
    bias = rng.standard_normal(n).astype(np.float32)
    session = open_session(rpc=emulated_board.address, timeout=120)
    device = session.cpu(0)
    kernel = load_remote_module(session, path)["main"]
    out = tvm.runtime.tensor(np.zeros((1, m, n), np.float32), device)
    kernel(
        tvm.runtime.tensor(a[None], device),
        tvm.runtime.tensor(pack_array(w, n_axis, tile), device),
        tvm.runtime.tensor(bias, device),
        out,
    )
    actual = out.numpy()[0]

    np.testing.assert_array_equal(actual, blocked_fp16_reference(a, w, bias, k_block_for(k)))
    fp32_accumulation = a.astype(np.float64) @ w.astype(np.float64) + bias
    assert np.abs(actual - fp32_accumulation).max() > 1e-3  # so the accumulators really are FP16
    np.testing.assert_allclose(actual, fp32_accumulation, rtol=2e-2, atol=2e-2)


@pytest.mark.slow  # ~2 min: a cross compile, then the model runs under QEMU
def test_pi5_fp16_build_uses_fmla_8h_and_verifies_on_the_emulated_board(held_out_bert_onnx, emulated_board, tmp_path):
    out = tmp_path / "pi5-fp16"
    compiled = edgecc.compile(
        str(held_out_bert_onnx),
        target="raspberry-pi-5",
        output=str(out),
        seq_len=SEQ,
        precision="fp16",
        rpc=emulated_board.address,
        measure=False,
        log=lambda *_: None,
    )
    stats = compiled.report["accuracy"]["fp16"]
    assert stats["instruction"] == "fmla .8h (fullfp16)" and stats["fp16_math_layers"] > 0
    # hidden 48, FFN 100: the FFN's first layer (N = 100) is no multiple of 8 lanes and stays FP32, said why
    assert all("multiple of the instruction's 8 lanes" in f["reason"] for f in stats["fallbacks"])
    assert compiled.report["verification"]["where"] == emulated_board.address
    assert compiled.report["verification"]["status"] == "passed"
    tool = shutil.which("aarch64-linux-gnu-objdump")
    if tool:
        listing = subprocess.run([tool, "-d", str(out / "model.so")], capture_output=True, text=True).stdout
        assert any("\tfmla\t" in line and ".8h" in line for line in listing.splitlines())

    inputs = token_inputs(SEQ, VOCAB)
    from edgecc.artifact.loader import load_artifact

    board = load_artifact(out, rpc=emulated_board.address)
    try:
        actual = board.run(inputs)["last_hidden_state"]
    finally:
        board.close()
    expected = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
    cosines = cosine_rows(actual[0], expected[0])
    assert cosines.min() > 0.999, cosines.min()


@pytest.mark.slow  # ~2 min: a cross compile of a built-in model
def test_tinybert_4_pi5_fp16_build_computes_every_dense_layer_on_fmla_8h(tmp_path):
    tool = shutil.which("aarch64-linux-gnu-objdump")
    if tool is None:
        pytest.skip("the aarch64 cross binutils (binutils-aarch64-linux-gnu) are not installed")
    out = tmp_path / "tinybert-pi5-fp16"
    compiled = edgecc.compile(
        "tinybert-4",
        target="raspberry-pi-5",
        output=str(out),
        seq_len=32,
        precision="fp16",
        verify=False,
        measure=False,
        log=lambda *_: None,
    )
    stats = compiled.report["passes"]["cast_matmuls_to_fp16"]
    assert stats["fp16_math_layers"] == 24 and not stats["fallbacks"]  # 4 layers x (Q, K, V, out, FFN in, out)
    schedules = compiled.report["schedules"]
    # one kernel per distinct dense shape (QKV/out 312x312, FFN 312x1200 and 1200x312, fused epilogues)
    assert schedules["by_source"].get("rule:matmul-fp16", 0) >= 3 and not schedules["failures"], schedules
    listing = subprocess.run([tool, "-d", str(out / "model.so")], capture_output=True, text=True, check=True).stdout
    fmla16 = sum(1 for line in listing.splitlines() if "\tfmla\t" in line and ".8h" in line)
    assert fmla16 >= 24, fmla16
