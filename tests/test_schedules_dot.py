"""The dot-product matmul rule (edgecc/schedules/matmul_dot.py) and the row-quantize kernels: exact
int32 results against NumPy, and the instruction in the built code (disassembly)."""

import shutil
import subprocess

import numpy as np
import pytest
import tvm
from tvm import te

from edgecc.schedules import schedule_kernel, vector_lanes
from edgecc.schedules.common import schedule_source
from edgecc.schedules.matmul_dot import (
    INSTRUCTIONS,
    DotMatmulRule,
    dot_instruction,
    one_row_instruction,
    target_features,
)
from edgecc.schedules.quantize_rows import quantize_rows_kernel
from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array
from edgecc.targets import load_target

HOST = load_target("host")
PI5 = load_target("raspberry-pi-5")


def _dense_int8_kernel(m, k, n, a_dtype):
    """acc = A @ W (int32) then the dequantize epilogue the INT8 pass emits: (acc - zp * colsum) * s * w."""
    a = te.placeholder((m, k), a_dtype, name="a")
    w = te.placeholder((k, n), "int8", name="w")
    colsum = te.placeholder((n,), "int32", name="colsum")
    zp = te.placeholder((m, 1), "int32", name="zp")
    scale = te.placeholder((m, 1), "float32", name="scale")
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute(
        (m, n), lambda i, j: te.sum(a[i, r].astype("int32") * w[r, j].astype("int32"), axis=r), name="matmul"
    )
    out = te.compute(
        (m, n), lambda i, j: (acc[i, j] - zp[i, 0] * colsum[j]).astype("float32") * scale[i, 0], name="dequantize"
    )
    return te.create_prim_func([a, w, colsum, zp, scale, out])


def schedule_dot_kernel(func, target, lanes, constant_inputs):
    """`func` scheduled by the dot-product rule alone, or None when it does not take it."""
    scheduled = schedule_kernel(
        func, "main", lanes, target, frozenset(constant_inputs), rules=(DotMatmulRule(),), packed_attr=PACKED_ATTR
    )
    return scheduled if schedule_source(scheduled) == f"rule:{DotMatmulRule.name}" else None


def _build(target, m=24, k=72, n=96):
    ins = one_row_instruction(dot_instruction(target))
    func = _dense_int8_kernel(m, k, n, ins.activation_dtype)
    scheduled = schedule_dot_kernel(func, target, vector_lanes(target), constant_inputs={1})
    assert scheduled is not None, "the rule should match a u8/s8 x s8 -> s32 matmul with a constant weight"
    return ins, scheduled, tvm.compile(tvm.IRModule({"main": scheduled}), target=target.tvm())


def _host_instructions():
    features = target_features(HOST)
    return [ins for ins in INSTRUCTIONS if ins.feature in features and ins.feature != "dotprod" and ins.rows == 1]


def _host_like(mcpu):
    """The host with an older CPU name, for the instructions this CPU also runs (VNNI -> AVX-512BW -> AVX2)."""
    from dataclasses import replace

    return replace(HOST, tvm_target={"kind": "llvm", "mcpu": mcpu, "num-cores": 2})


# CPU names whose best instruction is each x86 variant
X86_VARIANTS = {"vpdpbusd": None, "vpmaddubsw-16": "skylake-avx512", "vpmaddubsw-8": "haswell"}


def _x86_targets():
    features = target_features(HOST)
    chosen = []
    for label, mcpu in X86_VARIANTS.items():
        target = HOST if mcpu is None else _host_like(mcpu)
        ins = one_row_instruction(dot_instruction(target))
        if ins is not None and ins.feature in features and (mcpu is not None or ins.name == "vpdpbusd"):
            chosen.append(pytest.param(target, id=label))
    return chosen or [pytest.param(None, marks=pytest.mark.skip(reason="this CPU has no x86 INT8 dot instruction"))]


@pytest.mark.parametrize("target", _x86_targets())
def test_int8_matmul_rule_is_exact_against_numpy_int32(target, tmp_path):
    ins, scheduled, lib = _build(target)
    ((position, n_axis, tile, group),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
    assert (position, n_axis, group) == (1, 1, 4) and tile % ins.lanes == 0
    rng = np.random.default_rng(0)
    low, high = ins.activation_range
    a = rng.integers(low, high + 1, (24, 72)).astype(ins.activation_dtype)
    w = rng.integers(-127, 128, (72, 96)).astype("int8")
    colsum = w.astype(np.int32).sum(0).astype(np.int32)
    zp = rng.integers(low, high + 1, (24, 1)).astype(np.int32)
    scale = np.ones((24, 1), np.float32)
    out = tvm.runtime.tensor(np.zeros((24, 96), np.float32))
    if shutil.which("objdump"):
        lib.export_library(str(tmp_path / "k.so"))
        assert ins.name in _disassembly(tmp_path / "k.so", "objdump")
    lib = lib.jit()
    lib["main"](*[tvm.runtime.tensor(v) for v in (a, pack_array(w, n_axis, tile, group), colsum, zp, scale)], out)
    expected = a.astype(np.int64) @ w.astype(np.int64) - zp * colsum  # exact: |values| < 2^24
    np.testing.assert_array_equal(out.numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("codes", ["dynamic", "static"])
@pytest.mark.parametrize("target", _x86_targets())
def test_worst_case_int8_products_do_not_saturate(target, codes):
    """Every activation at its largest code against weights at the largest magnitude the pass gives them,
    all of one sign: vpmaddubsw sums each two products in an int16 that saturates at 32767, so this is
    where its results would first go wrong. Exact against NumPy's int32, with either code range."""
    ins, scheduled, lib = _build(target)
    ((_, n_axis, tile, group),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
    low, high = ins.activation_range if codes == "dynamic" else ins.static_activation_range
    limit = ins.weight_limit((low, high))
    if ins.pair_sum_limit is not None:
        assert 2 * max(abs(low), abs(high)) * limit <= ins.pair_sum_limit
    lib = lib.jit()
    for sign in (1, -1):
        a = np.full((24, 72), high, ins.activation_dtype)
        w = np.full((72, 96), sign * limit, "int8")
        if ins.pair_sum_limit is None:  # nothing to saturate: every other column at int8's -128
            w[:, 1::2] = -128
        zero = np.zeros((24, 1), np.int32)
        out = tvm.runtime.tensor(np.zeros((24, 96), np.float32))
        arrays = (a, pack_array(w, n_axis, tile, group), np.zeros(96, np.int32), zero, np.ones((24, 1), np.float32))
        lib["main"](*[tvm.runtime.tensor(v) for v in arrays], out)
        expected = a.astype(np.int32) @ w.astype(np.int32)  # |values| < 2^24: exact in float32
        np.testing.assert_array_equal(out.numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("mcpu,registers", [("haswell", 16), ("skylake-avx512", 32), ("cascadelake", 32)])
def test_register_tile_fits_the_vector_registers(mcpu, registers):
    """Accumulators, weight vectors and the instruction's scratch (vpmaddubsw: broadcast, pair sums,
    ones) within the target's registers: 4 x 3 on AVX2's 16 spilled (1536 -> 384: 1.27 ms, 0.79 fitting).
    Only scheduled, not run: the check holds for a class this CPU lacks."""
    target = _host_like(mcpu)
    ins = one_row_instruction(dot_instruction(target))
    for m, k, n in ((128, 1536, 384), (128, 384, 1536), (24, 72, 96)):
        scheduled = schedule_dot_kernel(_dense_int8_kernel(m, k, n, ins.activation_dtype), target, 8, {1})
        ((_, _, tile, _),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
        vectors = tile // ins.lanes
        rows = DotMatmulRule()._register_tile(m, n // ins.lanes, ins, target)[0]
        assert rows * vectors + vectors + ins.scratch_registers <= registers, (m, n, rows, vectors)
        assert rows * vectors >= 8  # still a tile, not a row of one vector
    if registers == 32:  # AVX-512 keeps the measured 4 x 3
        assert DotMatmulRule()._register_tile(128, 24, ins, target) == (4, 3)


def test_rule_leaves_fp32_and_non_constant_kernels_alone():
    func = _dense_int8_kernel(8, 16, 32, dot_instruction(HOST).activation_dtype)
    assert schedule_dot_kernel(func, HOST, 16, constant_inputs=set()) is None  # weight not a constant
    a, b = te.placeholder((8, 16), name="a"), te.placeholder((16, 32), name="b")
    r = te.reduce_axis((0, 16))
    fp32 = te.create_prim_func(
        [a, b, te.compute((8, 32), lambda i, j: te.sum(a[i, r] * b[r, j], axis=r), name="matmul")]
    )
    assert schedule_dot_kernel(fp32, HOST, 16, constant_inputs={1}) is None


def _disassembly(library_path, tool):
    return subprocess.run([tool, "-d", str(library_path)], capture_output=True, text=True, check=True).stdout


def test_host_build_holds_the_dot_product_instruction(tmp_path):
    if not _host_instructions():
        pytest.skip("this CPU has none of AVX-512 VNNI, AVX-512BW, AVX2: no INT8 dot-product instruction")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    ins, _, lib = _build(HOST)
    lib.export_library(str(tmp_path / "k.so"))
    mnemonic = {"vpdpbusd": "vpdpbusd", "vpmaddubsw": "vpmaddubsw"}[ins.name]
    assert mnemonic in _disassembly(tmp_path / "k.so", "objdump")
    if "avx512vnni" in target_features(HOST):
        assert ins.name == "vpdpbusd"


def test_raspberry_pi_5_build_holds_sdot(tmp_path):
    tool = shutil.which("aarch64-linux-gnu-objdump")
    if tool is None or shutil.which(PI5.toolchain.compiler) is None:
        pytest.skip("the aarch64 cross binutils/gcc (g++-aarch64-linux-gnu) are not installed")
    ins, _, lib = _build(PI5)
    assert ins.name == "sdot"
    from tvm.support import cc

    lib.export_library(str(tmp_path / "k.so"), fcompile=cc.cross_compiler(PI5.toolchain.require()))
    assert "sdot\tv" in _disassembly(tmp_path / "k.so", tool)


def test_targets_without_a_dot_instruction_get_none():
    assert dot_instruction(load_target("raspberry-pi-4")) is None  # Cortex-A72: no +dotprod
    assert dot_instruction(load_target("jetson-orin-nano")) is None  # a CUDA target


@pytest.mark.parametrize("dtype,low,high", [("uint8", 0, 255), ("int8", -128, 127), ("uint8", 0, 127)])
def test_quantize_rows_kernel_reconstructs_each_row_within_half_a_step(dtype, low, high):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 48)).astype(np.float32)
    x[0, 1] = np.abs(x[0, 1])  # one-sided row: the zero point moves to the end of the range
    x[1, 2] = 0.0  # an all-zero row must not divide by zero
    func = quantize_rows_kernel(x.shape, low, high, dtype, 16)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=HOST.tvm()).jit()
    outs = [
        tvm.runtime.tensor(np.zeros(x.shape, dtype)),
        tvm.runtime.tensor(np.zeros((2, 5, 1), np.float32)),
        tvm.runtime.tensor(np.zeros((2, 5, 1), np.int32)),
    ]
    lib["main"](tvm.runtime.tensor(x), *outs)
    q, scale, zp = (o.numpy() for o in outs)
    assert q.min() >= low and q.max() <= high and zp.min() >= low and zp.max() <= high
    error = np.abs(scale * (q.astype(np.float32) - zp) - x)
    assert np.all(error <= scale * 0.5 + 1e-6)
    assert zp[0, 1, 0] == low and np.all(x[1, 2] == 0) and np.all(q[1, 2] == zp[1, 2])


def test_bf16_matmul_rule_matches_numpy_on_bf16_rounded_operands(tmp_path):
    import ml_dtypes

    ins = one_row_instruction(dot_instruction(HOST, "bf16"))
    if ins is None:
        pytest.skip("this CPU has no AVX512-BF16 (vdpbf16ps)")
    a = te.placeholder((8, 64), "bfloat16", name="a")
    w = te.placeholder((64, 48), "bfloat16", name="w")
    r = te.reduce_axis((0, 64), name="r")
    out = te.compute(
        (8, 48), lambda i, j: te.sum(a[i, r].astype("float32") * w[r, j].astype("float32"), axis=r), name="matmul"
    )
    scheduled = schedule_dot_kernel(te.create_prim_func([a, w, out]), HOST, 16, constant_inputs={1})
    assert scheduled is not None
    ((position, n_axis, tile, group),) = [tuple(int(v) for v in e) for e in scheduled.attrs[PACKED_ATTR]]
    assert group == 2
    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=HOST.tvm())
    if shutil.which("objdump"):
        lib.export_library(str(tmp_path / "k.so"))
        assert "vdpbf16ps" in _disassembly(tmp_path / "k.so", "objdump")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 64)).astype(ml_dtypes.bfloat16)
    weight = rng.standard_normal((64, 48)).astype(ml_dtypes.bfloat16)
    result = tvm.runtime.tensor(np.zeros((8, 48), np.float32))
    lib.jit()["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(pack_array(weight, n_axis, tile, group)), result)
    expected = x.astype(np.float64) @ weight.astype(np.float64)  # bf16 products are exact in float32
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-5)
