"""Convolution and pooling rules on hand-built NHWC kernels: each is scheduled by its own rule and
computes what the naive kernel computes (AVX-512's and NEON's vector widths, both run here)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te, topi

from edgecc.schedules import CPU_RULES, schedule_kernel
from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array
from edgecc.targets import load_target


def _conv(n_h_w_c, kernel_hwio, stride, padding, groups=1, epilogue=None, residual=False):
    data = te.placeholder(n_h_w_c, "float32", name="data")
    weight = te.placeholder(kernel_hwio, "float32", name="weight")
    bias = te.placeholder((1, 1, 1, kernel_hwio[3]), "float32", name="bias")
    out = topi.nn.conv(data, weight, stride, padding, 1, groups, "NHWC", "HWIO")
    out = topi.add(out, bias)
    if epilogue == "relu":
        out = topi.nn.relu(out)
    elif epilogue == "gelu-like":  # several elementwise stages, as FuseOps leaves GELU
        out = topi.multiply(out, topi.add(topi.tanh(out), te.const(1.0)))
    extra = []
    if residual:
        skip = te.placeholder([int(d) for d in out.shape], "float32", name="skip")
        out, extra = topi.add(out, skip), [skip]
    return te.create_prim_func([data, weight, bias, *extra, out]), {1}


def _pool(kind, shape, size, stride, padding):
    data = te.placeholder(shape, "float32", name="data")
    out = topi.nn.pool2d(data, size, stride, (1, 1), padding, kind, layout="NHWC", count_include_pad=False)
    return te.create_prim_func([data, out]), set()


def _reduce(kind, shape, axis):
    data = te.placeholder(shape, "float32", name="data")
    if kind == "sum":
        out = topi.sum(data, axis=axis, keepdims=True)
    else:  # as Relax legalizes a mean: the sum, then a division
        count = int(np.prod([shape[a] for a in axis]))
        out = topi.divide(topi.sum(data, axis=axis), te.const(float(count)))
    return te.create_prim_func([data, out]), set()


KERNELS = {
    # name: (builder, rule that must schedule it)
    "conv3x3-stride2-relu": (
        lambda: _conv((1, 15, 15, 24), (3, 3, 24, 48), 2, 1, epilogue="relu"),
        "conv2d-nhwc-register-tile",
    ),
    # 196 pixels: the row tile does not divide the 14-wide rows, the epilogue must still be exact;
    # its small weight beside the maps puts pixel tiles outermost, conv3x3's weight panels
    "conv1x1-residual": (
        lambda: _conv((1, 14, 14, 32), (1, 1, 32, 64), 1, 0, epilogue="gelu-like", residual=True),
        "conv2d-nhwc-register-tile",
    ),
    "conv1x1-no-epilogue": (lambda: _conv((1, 8, 8, 48), (1, 1, 48, 96), 1, 0), "conv2d-nhwc-register-tile"),
    "grouped-conv3x3": (lambda: _conv((1, 9, 9, 32), (3, 3, 16, 32), 1, 1, groups=2), "conv2d-nhwc-register-tile"),
    "depthwise3x3": (lambda: _conv((1, 10, 10, 48), (3, 3, 1, 48), 1, 1, groups=48), "depthwise-conv2d-nhwc"),
    "depthwise3x3-stride2": (
        lambda: _conv((1, 16, 16, 32), (3, 3, 1, 32), 2, 1, groups=32, epilogue="relu"),
        "depthwise-conv2d-nhwc",
    ),
    "maxpool3x3-stride2": (lambda: _pool("max", (1, 15, 15, 32), (3, 3), (2, 2), (1, 1, 1, 1)), "pool2d-nhwc"),
    "avgpool2x2": (lambda: _pool("avg", (1, 8, 8, 48), (2, 2), (2, 2), (0, 0, 0, 0)), "pool2d-nhwc"),
    "global-average-pool": (lambda: _reduce("mean", (1, 7, 7, 64), (1, 2)), "channel-vector-reduction"),
    "sum-over-tokens": (lambda: _reduce("sum", (1, 50, 48), (1,)), "channel-vector-reduction"),
    "row-sum": (lambda: _reduce("sum", (1, 50, 48), (2,)), "single-row-reduction"),
    "row-mean": (lambda: _reduce("mean", (3, 64), (1,)), "single-row-reduction"),
}


def _run(func, target, arrays):
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*tensors)
    return tensors[-1].numpy()


@pytest.mark.parametrize("lanes", [16, 4])  # AVX-512, NEON widths
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_rule_schedules_its_kernel_and_matches_the_naive_kernel(name, lanes):
    build, rule = KERNELS[name]
    func, constants = build()
    host = load_target("host")
    scheduled = schedule_kernel(func, name, lanes, host, frozenset(constants), CPU_RULES)
    failures = list(scheduled.attrs.get("edgecc.schedule_failures", [])) if scheduled.attrs else []
    assert scheduled.attrs["edgecc.schedule"] == f"rule:{rule}", failures
    assert not failures
    text = scheduled.script()
    assert "T.parallel" in text and "T.vectorized" in text
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in func.params]
    want = _run(func, host.tvm(), [a.copy() for a in arrays])
    given = [a.copy() for a in arrays]
    for position, n_axis, tile in scheduled.attrs.get(PACKED_ATTR, []):
        assert int(position) in constants  # only weights that are constants at every call are repacked
        given[int(position)] = pack_array(arrays[int(position)], int(n_axis), int(tile))
    np.testing.assert_allclose(_run(scheduled, host.tvm(), given), want, rtol=1e-5, atol=1e-5)


def test_register_tile_fits_the_registers_and_divides_the_kernel():
    from edgecc.schedules.conv import register_tile

    for rows, vectors, registers in [(4096, 16, 32), (196, 4, 32), (49, 14, 32), (3136, 3, 16), (64, 10, 32)]:
        r, v = register_tile(rows, vectors, registers)
        assert rows % r == 0 and vectors % v == 0 and r * v + v + 1 <= registers
        assert r * v >= 8  # never a degenerate one-accumulator tile on these shapes


def test_hexagon_convolutions_run_on_hvx_vectors():
    """The Hexagon target's 128-byte HVX vectors are 32 float lanes: its conv kernels vectorise to
    HVX loads and qfloat arithmetic (with 4 lanes LLVM left them scalar: `sfmpy`, no `vmem`)."""
    from edgecc.schedules import vector_lanes

    hexagon = load_target("snapdragon-8-gen-2-hexagon")
    assert vector_lanes(hexagon) == 32
    for name in ("conv1x1-no-epilogue", "depthwise3x3"):
        func, constants = KERNELS[name][0]()
        scheduled = schedule_kernel(func, name, 32, hexagon, frozenset(constants), CPU_RULES)
        assert scheduled.attrs["edgecc.schedule"] == f"rule:{KERNELS[name][1]}"
        module = tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")})
        assembly = tvm.compile(module, target=hexagon.tvm()).mod.inspect_source("asm")
        assert assembly.count("vmem(") > 0 and "qf32" in assembly and "sfmpy" not in assembly, name


@pytest.mark.parametrize("name", ["conv1x1-residual", "conv3x3-stride2-relu"])
def test_epilogue_runs_on_each_output_tile_not_as_a_second_sweep(name):
    """Bias, activation and residual add run on each tile as it leaves the registers: the only
    parallel loops are the tiles' (and the padded copy's). A second sweep over the whole output
    re-read it from memory (MobileViT-S's convolutions were 8% slower so)."""
    func, constants = KERNELS[name][0]()
    scheduled = schedule_kernel(func, name, 16, load_target("host"), frozenset(constants), CPU_RULES)
    text = scheduled.script()
    assert text.count("T.parallel(") == 1 + ("pad_temp" in text)


def test_row_sums_partial_sums_run_inside_each_rows_parallel_task():
    """The lane-wise partial sums (rfactor) of a row run in that row's task: where rfactor left
    them they were one serial sweep over every row before the parallel loop (EfficientFormer-L1's
    3136 x 48 row sum: 44.5 -> 11.7 us)."""
    func, constants = KERNELS["row-sum"][0]()
    scheduled = schedule_kernel(func, "row-sum", 16, load_target("host"), frozenset(constants), CPU_RULES)
    text = scheduled.script()
    assert "_rf" in text  # the partial sums are there
    outermost = [line for line in text.splitlines() if line.startswith("    for ")]
    assert outermost and all("T.parallel" in line for line in outermost)


def test_a_large_output_is_prefetched_for_writing_some_tiles_ahead_and_a_small_one_is_not():
    host = load_target("host")
    large, constants = _conv((1, 64, 64, 32), (1, 1, 32, 256), 1, 0, epilogue="relu")  # 4 MiB out
    small, _ = _conv((1, 32, 32, 32), (1, 1, 32, 256), 1, 0, epilogue="relu")  # 1 MiB out
    scheduled = schedule_kernel(large, "large", 16, host, frozenset(constants), CPU_RULES)
    text = scheduled.script()
    # one write prefetch (rw 1) per task of the parallel loop, nothing inside the reduction
    assert text.count("llvm.prefetch") == 1 and ", 1, 3, 1)" in text, text
    untouched = schedule_kernel(small, "small", 16, host, frozenset(constants), CPU_RULES).script()
    assert "llvm.prefetch" not in untouched
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in large.params]
    want = _run(large, host.tvm(), [a.copy() for a in arrays])
    given = [a.copy() for a in arrays]
    for position, n_axis, tile in scheduled.attrs[PACKED_ATTR]:
        given[int(position)] = pack_array(arrays[int(position)], int(n_axis), int(tile))
    np.testing.assert_allclose(_run(scheduled, host.tvm(), given), want, rtol=1e-5, atol=1e-5)
