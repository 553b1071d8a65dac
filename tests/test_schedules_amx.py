"""The AMX matmul rule (edgecc/schedules/matmul_amx.py): BF16 and INT8 dense kernels on tile
instructions, against NumPy, with the instruction in the built code; the host's CPU flags decide
whether AMX is used at all (edgecc/targets/cpu_flags.py)."""

import shutil
import subprocess

import numpy as np
import pytest
import tvm
from tvm import te

from edgecc.measure.counting import count_ops
from edgecc.schedules import CPU_RULES, schedule_kernel, vector_lanes
from edgecc.schedules.common import schedule_source
from edgecc.schedules.matmul_amx import AmxMatmulRule, tile_instruction
from edgecc.schedules.matmul_dot import TDPBF16PS, TDPBUSD, VDPBF16PS, dot_instruction
from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array
from edgecc.targets import load_target
from edgecc.targets.cpu_flags import feature_corrections
from edgecc.targets.microarch import core_arithmetic

HOST = load_target("host")
needs_amx = pytest.mark.skipif(
    tile_instruction(HOST, "bf16") is None or tile_instruction(HOST, "int8") is None,
    reason="this CPU (or its Linux) has no AMX-BF16 / AMX-INT8 tiles",
)


def _dense(m, k, n, precision):
    """acc = A @ W then a bias epilogue, as the BF16 / INT8 passes emit them (the INT8 one dequantizes too)."""
    a_dtype, w_dtype, acc_dtype = (
        ("bfloat16", "bfloat16", "float32") if precision == "bf16" else ("uint8", "int8", "int32")
    )
    a = te.placeholder((m, k), a_dtype, name="a")
    w = te.placeholder((k, n), w_dtype, name="w")
    bias = te.placeholder((n,), "float32", name="bias")
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute(
        (m, n), lambda i, j: te.sum(a[i, r].astype(acc_dtype) * w[r, j].astype(acc_dtype), axis=r), name="matmul"
    )
    out = te.compute((m, n), lambda i, j: acc[i, j].astype("float32") + bias[j], name="bias_add")
    return te.create_prim_func([a, w, bias, out])


def _operands(m, k, n, precision, seed=0):
    import ml_dtypes

    rng = np.random.default_rng(seed)
    if precision == "bf16":
        a = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
        w = rng.standard_normal((k, n)).astype(ml_dtypes.bfloat16)
        exact = a.astype(np.float64) @ w.astype(np.float64)
    else:
        a = rng.integers(0, 256, (m, k)).astype(np.uint8)
        w = rng.integers(-128, 128, (k, n)).astype(np.int8)
        exact = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float64)
    bias = rng.standard_normal(n).astype(np.float32)
    return a, w, bias, exact + bias


def _scheduled(func, rules):
    return schedule_kernel(func, "main", vector_lanes(HOST), HOST, frozenset({1}), rules=rules, packed_attr=PACKED_ATTR)


@needs_amx
@pytest.mark.parametrize(
    "precision, m, k, n",
    # the last two: deep panels beside small activations, in K blocks (AmxMatmulRule._k_block)
    [("bf16", 48, 96, 80), ("int8", 32, 192, 48), ("bf16", 16, 64, 32), ("bf16", 64, 768, 256), ("int8", 32, 512, 256)],
)
def test_amx_rule_matches_numpy_and_holds_the_tile_instruction(precision, m, k, n, tmp_path):
    func = _dense(m, k, n, precision)
    scheduled = _scheduled(func, CPU_RULES)
    assert schedule_source(scheduled) == "rule:matmul-amx"
    ins = TDPBF16PS if precision == "bf16" else TDPBUSD
    ops = count_ops(scheduled)  # the profile's roofline counts the tiles' work
    assert ops.get(precision) == 2 * m * n * k
    ((position, n_axis, tile, group),) = [[int(x) for x in p] for p in scheduled.attrs[PACKED_ATTR]]
    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=HOST.tvm())
    a, w, bias, expected = _operands(m, k, n, precision)
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros((m, n), np.float32), dev)
    lib["main"](
        tvm.runtime.tensor(a, dev),
        tvm.runtime.tensor(pack_array(w, n_axis, tile, group), dev),
        tvm.runtime.tensor(bias, dev),
        out,
    )
    got = out.numpy().astype(np.float64)
    if precision == "int8":
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    else:  # FP32 accumulation of exact bf16 products: only the summation order differs
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    if shutil.which("objdump"):
        lib.export_library(str(tmp_path / "k.so"))
        text = subprocess.run(["objdump", "-d", str(tmp_path / "k.so")], capture_output=True, text=True).stdout
        assert ins.name in text and "ldtilecfg" in text


def test_weight_panels_are_cut_into_k_blocks_only_beside_small_activations():
    rule = AmxMatmulRule(k_block=256, k_block_max_activation_kib=512)
    assert rule._k_block(TDPBF16PS, 128, 768, panels=24) == 256  # DistilBERT's 768 x 768
    assert rule._k_block(TDPBUSD, 128, 768, panels=24) == 256
    assert rule._k_block(TDPBF16PS, 128, 3072, panels=24) is None  # 768 KiB of activations
    assert rule._k_block(TDPBUSD, 128, 3072, panels=24) == 256  # the same in INT8 is 384 KiB
    assert rule._k_block(TDPBF16PS, 128, 384, panels=12) is None  # no whole number of blocks
    assert rule._k_block(TDPBF16PS, 128, 256, panels=12) is None  # one block: nothing to cut
    assert rule._k_block(TDPBF16PS, 128, 768, panels=2) is None  # too few parallel tasks
    assert AmxMatmulRule(k_block=0)._k_block(TDPBF16PS, 128, 768, panels=24) is None


@needs_amx
def test_a_kernel_the_tiles_do_not_fit_goes_to_the_avx512_rule():
    func = _dense(24, 96, 80, "bf16")  # 24 rows: not a multiple of a tile's 16
    assert schedule_source(_scheduled(func, (AmxMatmulRule(),))) is None
    assert schedule_source(_scheduled(func, CPU_RULES)) == "rule:matmul-dot"


def test_amx_is_chosen_only_where_the_cpu_has_it_and_linux_allows_it():
    from dataclasses import replace

    spr = replace(HOST, tvm_target={"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2})
    zen4 = replace(HOST, tvm_target={"kind": "llvm", "mcpu": "znver4", "num-cores": 2})
    assert dot_instruction(zen4, "bf16") == VDPBF16PS
    assert dot_instruction(spr, "bf16") in (TDPBF16PS, VDPBF16PS)
    assert (dot_instruction(spr, "bf16") == TDPBF16PS) == (tile_instruction(spr, "bf16") is not None)
    assert TDPBF16PS.fallback == VDPBF16PS  # a layer the tiles do not fit still computes in BF16


def test_cpu_flags_correct_the_llvm_cpu_name():
    # a VM reporting an AMX Xeon as model 167, which LLVM names rocketlake
    xeon = "flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512dq avx512vl avx512_vnni avx512_bf16 amx_tile amx_bf16\n"
    assert {"+avx512bf16", "+amx-tile", "+amx-bf16"} <= set(feature_corrections("rocketlake", xeon, "x86_64"))
    # a hypervisor hiding AVX-512 from a CPU whose name promises it
    hidden = "flags\t\t: fpu sse avx avx2 fma f16c\n"
    assert "-avx512f" in feature_corrections("skylake-avx512", hidden, "x86_64")
    assert feature_corrections("skylake-avx512", "", "x86_64") == []  # unreadable flags: the name stands
    assert core_arithmetic("rocketlake", "Intel(R) Xeon(R) Processor", {"amx-tile"}).bf16 == 1024
