"""FP16 dense layers (edgecc/schedules/matmul_fp16.py, passes/precision/cast_matmuls_to_fp16.py): which
targets get FP16 arithmetic, `fmla .8h` in the Raspberry Pi 5 build (disassembly), the pass's rewrite,
and the one line x86 gets (FP16 storage only). The rule's numbers are checked here on the x86 host
(the Pi 5 schedule compiled for this CPU: LLVM widens each FP16 fused multiply-add to FP32 and
rounds once, the same numbers) and on the emulated board in tests/test_precision_fp16_board.py
(slow)."""

import shutil
import subprocess

import numpy as np
import pytest
import tvm

from edgecc.options import CompileOptions
from edgecc.passes.precision import precision_passes
from edgecc.schedules.matmul_fp16 import fp16_instruction
from edgecc.schedules.weight_packing import PACKED_ATTR
from edgecc.targets import load_target

from fixtures_precision import (
    blocked_fp16_reference,
    build_for_host,
    dense_module,
    fp16_dense_kernel,
    reference_dense,
    schedule_fp16,
)

PI5 = load_target("raspberry-pi-5")


def test_fp16_arithmetic_only_where_the_cpu_has_it():
    for name in ("raspberry-pi-5", "snapdragon-8-gen-2-cpu"):
        ins = fp16_instruction(load_target(name))
        assert ins is not None and (ins.name, ins.lanes, ins.activation_dtype) == ("fmla", 8, "float16"), name
    for name in ("host", "raspberry-pi-4", "jetson-orin-nano", "apple-m2-metal"):  # x86; Armv8.0; GPU kinds
        assert fp16_instruction(load_target(name)) is None, name
    assert schedule_fp16(fp16_dense_kernel(8, 32, 64), load_target("host")) is None


@pytest.mark.parametrize("m, k, n", [(16, 96, 64), (6, 48, 24), (5, 40, 8), (1, 24, 16), (32, 312, 312)])
def test_fp16_rule_computes_fp16_blocks_at_neon_widths(m, k, n):
    """The Pi 5 tile (8 FP16 lanes, rows x vectors from cpu.toml), run on this host: exactly FP16
    fused multiply-adds in K blocks summed in FP32, and within FP16 rounding of the exact product."""
    from edgecc.schedules.matmul_fp16 import k_block_for
    from edgecc.schedules.weight_packing import pack_array

    scheduled = schedule_fp16(fp16_dense_kernel(m, k, n), PI5)
    assert scheduled is not None, scheduled
    ((_, n_axis, tile),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
    assert tile % 8 == 0
    kernel = tvm.compile(tvm.IRModule({"main": scheduled}), target=load_target("host").tvm())["main"]
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((m, k)).astype(np.float16)
    w = rng.standard_normal((k, n)).astype(np.float16)
    bias = rng.standard_normal(n).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros((1, m, n), np.float32))
    kernel(tvm.runtime.tensor(a[None]), tvm.runtime.tensor(pack_array(w, n_axis, tile)), tvm.runtime.tensor(bias), out)
    actual = out.numpy()[0]
    block = k_block_for(k)
    np.testing.assert_array_equal(actual, blocked_fp16_reference(a, w, bias, block))
    a64, w64 = a.astype(np.float64), w.astype(np.float64)
    # each FP16 accumulator rounds at most `block` times (unit roundoff 2^-11); blocks add in FP32
    bound = (block * 2.0**-11 + k * 2.0**-24) * (np.abs(a64) @ np.abs(w64)) + 1e-6
    error = np.abs(actual - (a64 @ w64 + bias))
    assert (error <= bound).all(), (error / bound).max()
    if block > 8:  # long enough blocks that FP16 accumulators show: not secretly FP32 accumulation
        assert error.max() > 1e-3


def test_layers_whose_k_has_no_fp16_block_stay_fp32_and_say_why():
    from edgecc.schedules.matmul_fp16 import k_block_for

    assert [k_block_for(k) for k in (384, 1536, 312, 100, 4, 97, 1)] == [32, 32, 26, 25, 4, None, None]
    assert schedule_fp16(fp16_dense_kernel(8, 97, 16), PI5) is None  # the rule refuses, recorded


def test_raspberry_pi_5_fp16_kernel_holds_fmla_on_8h(tmp_path):
    tool = shutil.which("aarch64-linux-gnu-objdump")
    if tool is None or shutil.which(PI5.toolchain.compiler) is None:
        pytest.skip("the aarch64 cross binutils/gcc (g++-aarch64-linux-gnu) are not installed")
    scheduled = schedule_fp16(fp16_dense_kernel(32, 96, 96), PI5)
    assert scheduled is not None
    ((position, n_axis, tile),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
    assert (position, n_axis) == (1, 1) and tile % 8 == 0  # weight stored in [N/T, K, T] FP16 panels
    from tvm.support import cc

    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=PI5.tvm())
    lib.export_library(str(tmp_path / "k.so"), fcompile=cc.cross_compiler(PI5.toolchain.require()))
    listing = subprocess.run([tool, "-d", str(tmp_path / "k.so")], capture_output=True, text=True, check=True).stdout
    fmla16 = [line for line in listing.splitlines() if "\tfmla\t" in line and ".8h" in line]
    assert len(fmla16) >= 8, "the register tile's multiply-adds should be FP16 fmla on 8 lanes"
    assert "\tfcvtl\t" in listing and "\tfcvtl2\t" in listing  # FP16 block sums widened into FP32


def test_pass_puts_dense_layers_in_fp16_for_a_target_with_fp16_arithmetic(rng):
    mod, weights = dense_module(rng)
    (step,) = precision_passes(CompileOptions(precision="fp16"), PI5)
    after = step(mod)
    stats = step.stats
    assert stats.instruction == "fmla .8h (fullfp16)" and stats.fp16_math_layers == 2 and not stats.fallbacks
    assert stats.embedding_tables == 1 and "FP16 dense layers: 2 on fmla .8h" in stats.summary()
    text = after.script(show_meta=False)
    assert text.count('out_dtype="float32"') == 2
    softmax_line = next(line for line in text.splitlines() if "R.nn.softmax" in line)
    assert 'dtype="float32"' in softmax_line
    # On this x86 host the same module runs with FP32 accumulation (no fmla .8h here): the rewrite
    # itself (operands rounded to FP16, FP16 table) must reproduce the FP16-rounded reference.
    _, run = build_for_host(after)
    ids = rng.integers(0, 200, (1, 8)).astype("int64")
    half = reference_dense(ids, weights, lambda name, w: w.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(run(ids), half, rtol=2e-2, atol=2e-3)


def test_x86_fp16_is_storage_only_and_says_so(rng):
    mod, _ = dense_module(rng)
    host = load_target("host")
    if host.arch not in ("x86_64", "x86"):
        pytest.skip("this host is not an x86 CPU")
    (step,) = precision_passes(CompileOptions(precision="fp16"), host)
    step(mod)
    line = step.stats.summary()
    assert line.startswith("FP16 storage only:") and "x86" in line and "\n" not in line
    assert step.stats.fp16_math is False and step.stats.instruction is None
