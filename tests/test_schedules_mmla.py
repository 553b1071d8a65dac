"""The smmla matmul rule (edgecc/schedules/matmul_mmla.py): chosen on i8mm targets only, smmla in the
built code (disassembly), kernels its tile does not fit on sdot (counted by rule), and exact int32
results on the emulated aarch64 board (QEMU's default CPU model has i8mm)."""

import subprocess
from dataclasses import replace

import numpy as np
import pytest
import tvm
from tvm import relax, te

from edgecc.measure.counting import count_ops
from edgecc.passes.precision.dense_weights import instruction_fallback_reason, unsupported_reason
from edgecc.schedules import schedule_kernel, vector_lanes
from edgecc.schedules.common import schedule_source
from edgecc.schedules.matmul_dot import SDOT, SMMLA, DotMatmulRule, dot_instruction
from edgecc.schedules.matmul_mmla import MmlaMatmulRule, mmla_instruction
from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array
from edgecc.targets import find_tool, load_target

SNAPDRAGON = load_target("snapdragon-8-gen-2-cpu")
PI5 = load_target("raspberry-pi-5")
CROSS = ("aarch64-linux-gnu-g++", "aarch64-linux-gnu-objdump")


def _dense_int8_kernel(shape, n, epilogue=True):
    """acc = A @ W (int32), then the INT8 pass's dequantize epilogue; A [..., M, K] int8, W [K, N] int8.
    Without the epilogue the kernel returns acc itself."""
    *lead, m, k = shape
    a = te.placeholder(shape, "int8", name="a")
    w = te.placeholder((k, n), "int8", name="w")
    colsum = te.placeholder((n,), "int32", name="colsum")
    zp = te.placeholder((*lead, m, 1), "int32", name="zp")
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute(
        (*lead, m, n), lambda *i: te.sum(a[(*i[:-1], r)].astype("int32") * w[r, i[-1]].astype("int32"), axis=r)
    )
    if not epilogue:
        return te.create_prim_func([a, w, acc])
    out = te.compute((*lead, m, n), lambda *i: (acc[i] - zp[(*i[:-1], 0)] * colsum[i[-1]]).astype("float32"))
    return te.create_prim_func([a, w, colsum, zp, out])


def _schedule(func, target, rules):
    return schedule_kernel(
        func, "main", vector_lanes(target), target, frozenset({1}), rules=rules, packed_attr=PACKED_ATTR
    )


def _cross_build(scheduled, target, path):
    from tvm.support import cc

    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=target.tvm())
    lib.export_library(str(path), fcompile=cc.cross_compiler(target.toolchain.require()))
    return subprocess.run([find_tool(CROSS[1]), "-d", str(path)], capture_output=True, text=True, check=True).stdout


def test_smmla_is_chosen_only_where_the_target_has_i8mm():
    assert dot_instruction(SNAPDRAGON) == SMMLA and SMMLA.label == "smmla (i8mm)"
    assert mmla_instruction(SNAPDRAGON).fallback == SDOT  # the Cortex-X3 has dotprod too
    orin_cpu = replace(PI5, tvm_target={**PI5.tvm_target, "mcpu": "cortex-a78ae"})  # Jetson Orin's CPU cores
    for target in (PI5, orin_cpu):  # Cortex-A76 / A78AE: dotprod, no i8mm
        assert mmla_instruction(target) is None and dot_instruction(target) == SDOT
    # matmul-dot on an i8mm target tiles with smmla's fallback, never with smmla itself
    assert DotMatmulRule.candidates(SNAPDRAGON)[0] == SDOT


def test_shape_rules_send_layers_the_tile_does_not_fit_to_sdot():
    def x(*shape):
        return relax.Var("x", relax.TensorType(shape, "float32"))

    fits, odd_rows, short_k = (x(1, 24, 48), np.zeros((48, 100), np.float32)), x(1, 25, 48), x(1, 24, 100)
    assert unsupported_reason(*fits, SMMLA) is None and instruction_fallback_reason(*fits, SMMLA) is None
    assert (
        instruction_fallback_reason(odd_rows, fits[1], SMMLA) == "M=25 rows are not a multiple of the instruction's 2"
    )
    k100 = np.zeros((100, 48), np.float32)
    assert unsupported_reason(short_k, k100, SMMLA) is None  # K=100: sdot's K % 4 holds
    assert instruction_fallback_reason(short_k, k100, SMMLA) == "K=100 is not a multiple of 8"
    neither = np.zeros((48, 98), np.float32)  # N=98: two-column smmla fits, four-lane sdot does not
    assert unsupported_reason(x(1, 25, 48), neither, SMMLA) == (
        "M=25 rows are not a multiple of the instruction's 2; on sdot: N=98 is not a multiple of the "
        "instruction's 4 lanes"
    )


@pytest.mark.toolchain(*CROSS)
def test_snapdragon_build_holds_smmla_and_odd_rows_fall_back_to_sdot(tmp_path):
    from edgecc.schedules import CPU_RULES

    scheduled = _schedule(_dense_int8_kernel((1, 24, 72), 96), SNAPDRAGON, CPU_RULES)
    assert schedule_source(scheduled) == f"rule:{MmlaMatmulRule.name}"
    ((_, _, tile, group),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
    assert group == 8 and tile % 2 == 0
    listing = _cross_build(scheduled, SNAPDRAGON, tmp_path / "mmla.so")
    assert "smmla\tv" in listing and "sdot\tv" not in listing
    # the profile's operation count reads smmla's 32 multiply-adds: the matmul plus the epilogue's 2 per output
    assert count_ops(scheduled) == {"int8": 2 * 24 * 72 * 96 + 2 * 24 * 96}

    odd = _schedule(_dense_int8_kernel((1, 25, 72), 96), SNAPDRAGON, CPU_RULES)
    assert schedule_source(odd) == f"rule:{DotMatmulRule.name}"  # counted apart in report.json["schedules"]
    listing = _cross_build(odd, SNAPDRAGON, tmp_path / "odd.so")
    assert "sdot\tv" in listing and "smmla" not in listing

    pi5 = _schedule(_dense_int8_kernel((1, 24, 72), 96), PI5, CPU_RULES)  # the Pi 5 has no i8mm
    assert schedule_source(pi5) == f"rule:{DotMatmulRule.name}"
    assert "smmla" not in _cross_build(pi5, PI5, tmp_path / "pi5.so")


# (activation shape, N): row tiles 8 / 4 / 2 and column tiles 8 / 4 / 2, a batch axis, a 2-D input
BOARD_SHAPES = [((1, 24, 72), 96), ((2, 12, 40), 100), ((6, 64), 18), ((2, 16), 8)]


@pytest.mark.toolchain(*CROSS)
def test_smmla_kernels_are_exact_on_the_emulated_board(emulated_board, tmp_path):
    from tvm import rpc

    session = rpc.connect(emulated_board.host, emulated_board.port)
    device = session.cpu()
    rng = np.random.default_rng(3)
    for number, (shape, n) in enumerate(BOARD_SHAPES):
        scheduled = _schedule(_dense_int8_kernel(shape, n), SNAPDRAGON, (MmlaMatmulRule(),))
        assert schedule_source(scheduled) == f"rule:{MmlaMatmulRule.name}", shape
        ((position, n_axis, tile, group),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
        path = tmp_path / f"k{number}.so"
        assert "smmla\tv" in _cross_build(scheduled, SNAPDRAGON, path)
        session.upload(str(path))
        kernel = session.load_module(path.name)["main"]
        a = rng.integers(-128, 128, shape).astype("int8")
        w = rng.integers(-127, 128, (shape[-1], n)).astype("int8")
        colsum = w.astype(np.int32).sum(0).astype(np.int32)
        zp = rng.integers(-128, 128, (*shape[:-1], 1)).astype(np.int32)
        out = tvm.runtime.tensor(np.zeros((*shape[:-1], n), np.float32), device)
        inputs = (a, pack_array(w, n_axis, tile, group), colsum, zp)
        kernel(*[tvm.runtime.tensor(v, device) for v in inputs], out)
        expected = a.astype(np.int64) @ w.astype(np.int64) - zp * colsum  # exact: |values| < 2^24
        np.testing.assert_array_equal(out.numpy(), expected.astype(np.float32), err_msg=str(shape))

    # no epilogue: the rule adds a copy that reads the 2 x 2 tiled accumulator back into [M, N]
    bare = _schedule(_dense_int8_kernel((16, 32), 8, epilogue=False), SNAPDRAGON, (MmlaMatmulRule(),))
    assert schedule_source(bare) == f"rule:{MmlaMatmulRule.name}"
    ((_, n_axis, tile, group),) = [tuple(int(v) for v in e) for e in bare.attrs[PACKED_ATTR]]
    _cross_build(bare, SNAPDRAGON, tmp_path / "bare.so")
    session.upload(str(tmp_path / "bare.so"))
    a = rng.integers(-128, 128, (16, 32)).astype("int8")
    w = rng.integers(-128, 128, (32, 8)).astype("int8")
    out = tvm.runtime.tensor(np.zeros((16, 8), np.int32), device)
    packed = tvm.runtime.tensor(pack_array(w, n_axis, tile, group), device)
    session.load_module("bare.so")["main"](tvm.runtime.tensor(a, device), packed, out)
    np.testing.assert_array_equal(out.numpy(), a.astype(np.int32) @ w.astype(np.int32))
