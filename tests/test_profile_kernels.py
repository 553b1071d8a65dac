"""Per-kernel profile of a small hand-built Relax module, built and timed with real TVM."""

import pytest

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402
from tvm.script import relax as R  # noqa: E402

from edgecc.measure.profile import call_counts, count_flops, profile_kernels, roofline  # noqa: E402


@tvm.script.ir_module
class TwoMatmuls:
    @R.function
    def main(x: R.Tensor((64, 128), "float32"), w: R.Tensor((128, 256), "float32"), b: R.Tensor((256,), "float32")):
        with R.dataflow():
            y = R.matmul(x, w)
            z = R.add(y, b)
            o = R.nn.relu(z)
            out = R.matmul(o, R.permute_dims(w))
            R.output(out)
        return out


@pytest.fixture(scope="module")
def built():
    mod = relax.transform.LegalizeOps()(TwoMatmuls)
    executable = relax.build(mod, target=tvm.target.Target({"kind": "llvm"}))
    return mod, executable


def test_flops_counted_from_tir(built):
    mod, _ = built
    flops = {gv.name_hint: count_flops(f) for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert flops["matmul"] == 2 * 64 * 128 * 256  # a multiply-add is two FLOPs
    assert flops["add"] == 64 * 256
    assert flops["transpose"] == 0
    assert call_counts(mod) == {"matmul": 1, "matmul1": 1, "add": 1, "relu": 1, "transpose": 1}


def test_profile_times_every_kernel_top_first(built):
    mod, executable = built
    profile = profile_kernels(mod, executable.mod, tvm.cpu(), peak_gflops=100.0, bandwidth_gbs=20.0, seconds=0.2)
    names = [k["name"] for k in profile["kernels"]]
    assert sorted(names) == ["add", "matmul", "matmul1", "relu", "transpose"] and not profile["skipped"]
    assert names[0].startswith("matmul")  # the matmuls dominate
    times = [k["total_ms"] for k in profile["kernels"]]
    assert times == sorted(times, reverse=True)
    matmul = next(k for k in profile["kernels"] if k["name"] == "matmul")
    assert matmul["bytes"] == (64 * 128 + 128 * 256 + 64 * 256) * 4
    assert matmul["bound"] == "compute" and matmul["ridge_point"] == 5.0
    assert matmul["achieved_gflops"] == pytest.approx(matmul["flops"] / (matmul["ms_per_call"] / 1e3) / 1e9)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    import numpy as np

    args = [tvm.runtime.tensor(np.random.rand(*s).astype("float32")) for s in ((64, 128), (128, 256), (256,))]
    e2e_ms = float(np.median(vm.time_evaluator("main", tvm.cpu(), number=20, repeat=20)(*args).results)) * 1e3
    # kernels alone cannot take longer than the whole model (2 shared cores make the lower bound noisy)
    assert 0 < profile["sum_ms"] < 1.5 * e2e_ms


def test_kernels_grouped_into_families_by_schedule_source(built):
    from edgecc.measure.profile import kernel_families
    from edgecc.measure.roofline import Machine

    mod, executable = built
    profile = profile_kernels(mod, executable.mod, tvm.cpu(), peak_gflops=100.0, bandwidth_gbs=20.0, seconds=0.1)
    # LegalizeOps' kernels carry no schedule: one family, every kernel and its time in it
    (family,) = profile["families"]
    assert family["schedule"] == "unscheduled" and family["kernels"] == 5
    assert family["total_ms"] == pytest.approx(profile["sum_ms"])

    def kernel(schedule, flops, calls, ms, precision="fp32"):
        return {"schedule": schedule, "flops": flops, "calls": calls, "total_ms": ms, "precision": precision}

    kernels = [
        kernel("rule:matmul", 2e9, 2, 40.0),  # 4 GFLOP in 40 ms
        kernel("rule:matmul", 1e9, 1, 10.0),  # 1 GFLOP in 10 ms
        kernel("rule:elementwise", 1e6, 10, 1.0),
        kernel("rule:matmul-amx", 8e9, 1, 4.0, "bf16"),
    ]
    rows = kernel_families(kernels, Machine({"fp32": 200.0, "bf16": 4000.0}, 20.0))
    assert [r["schedule"] for r in rows] == ["rule:matmul", "rule:matmul-amx", "rule:elementwise"]  # slowest first
    matmul, amx = rows[0], rows[1]
    assert matmul["kernels"] == 2 and matmul["calls"] == 3
    assert matmul["achieved_gflops"] == pytest.approx(100.0) and matmul["pct_of_peak_compute"] == pytest.approx(50.0)
    assert amx["precision"] == "bf16" and amx["pct_of_peak_compute"] == pytest.approx(50.0)


def test_roofline_placement_by_hand():
    # 1 GFLOP over 0.1 GB in 0.1 s: intensity 10 FLOP/B; ridge 100/20 = 5 -> compute-bound, 10 GFLOP/s = 10 %
    r = roofline(1e9, 1e8, 0.1, peak_gflops=100.0, bandwidth_gbs=20.0)
    assert r["arithmetic_intensity"] == 10 and r["bound"] == "compute"
    assert r["achieved_gflops"] == pytest.approx(10.0) and r["pct_of_peak_compute"] == pytest.approx(10.0)
    m = roofline(1e8, 1e9, 0.1, peak_gflops=100.0, bandwidth_gbs=20.0)
    assert m["bound"] == "memory" and m["attainable_gflops"] == pytest.approx(2.0)
    assert m["pct_of_peak_bandwidth"] == pytest.approx(50.0)


@tvm.script.ir_module
class EmbeddingLookup:
    @R.function
    def main(
        ids: R.Tensor((1, 16), "int64"), table: R.Tensor((30000, 64), "float32"), bias: R.Tensor((64,), "float32")
    ):
        with R.dataflow():
            rows = R.take(table, ids, axis=0)
            out = R.add(rows, bias)
            R.output(out)
        return out


def test_bytes_are_footprints_a_gather_reads_its_rows_not_the_table():
    from edgecc.measure.counting import count_ops
    from edgecc.measure.traffic import kernel_traffic

    mod = relax.transform.LegalizeOps()(EmbeddingLookup)
    take = next(f for gv, f in mod.functions.items() if gv.name_hint.startswith("take"))
    traffic = kernel_traffic(take)
    table = next(b for b in traffic.buffers if b.full_bytes == 30000 * 64 * 4)
    assert table.gathered and table.bytes_read == 16 * 64 * 4  # 16 rows of 64 floats, not 7.7 MB
    assert traffic.bytes_written == 16 * 64 * 4 and traffic.argument_bytes > 30000 * 64 * 4
    add = next(f for gv, f in mod.functions.items() if gv.name_hint == "add")
    # the broadcast bias counts once (64 floats), not once per row
    assert kernel_traffic(add).bytes == (16 * 64 + 64 + 16 * 64) * 4
    assert count_ops(add) == {"fp32": 16 * 64}


def test_kernels_timed_inside_the_model_account_for_it(built):
    from edgecc.measure.profile import profile_in_model

    mod, executable = built
    vm = relax.VirtualMachine(executable, tvm.cpu())
    import numpy as np

    args = [tvm.runtime.tensor(np.random.rand(*s).astype("float32")) for s in ((64, 128), (128, 256), (256,))]
    profile = profile_in_model(mod, vm, args, peak_gflops=100.0, bandwidth_gbs=20.0, seconds=0.3)
    assert sorted(k["name"] for k in profile["kernels"]) == ["add", "matmul", "matmul1", "relu", "transpose"]
    # plain runs and instrumented runs alternate; the kernels cannot take much longer than the whole model
    # (2 shared cores: a loaded moment can still skew one round, so the bound is loose)
    assert 0.3 < profile["sum_over_end_to_end"] < 1.5, profile["sum_over_end_to_end"]
    assert profile["runtime_calls"]["calls_per_run"] > 0 and profile["hook_us_per_call"] < 50
    matmul = next(k for k in profile["kernels"] if k["name"] == "matmul")
    assert matmul["flops"] == 2 * 64 * 128 * 256 and matmul["precision"] == "fp32"


def test_a_figure_above_the_roof_says_why():
    from edgecc.measure.roofline import Machine

    machine = Machine({"fp32": 100.0}, 20.0, cache_bytes=32 << 20)
    hot = roofline(1e6, 1e6, 1e-5, 100.0, 20.0, machine)  # 100 GB/s from 1 MB: it sat in cache
    assert hot["pct_of_peak_bandwidth"] > 100 and hot["above_roof"][0].startswith("cache-resident")
    big = roofline(1e6, 1e9, 1e-2, 100.0, 20.0, machine)  # 100 GB/s from 1 GB: impossible
    assert "byte count or the timing is wrong" in big["above_roof"][0]
    assert "above_roof" not in roofline(1e6, 1e6, 1e-3, 100.0, 20.0, machine)


@pytest.mark.parametrize("mcpu", [None, "haswell"])  # this CPU's instruction (VNNI here), and AVX2's pair
def test_a_tensorized_int8_kernel_counts_its_dot_products_and_its_packed_weight(mcpu):
    """The dot-product rule turns the int8 matmul into vpdpbusd (or vpmaddubsw + vpmaddwd) calls reading
    views (match_buffer) of the packed weight: every product and sum counts, and the weight counts once."""
    from dataclasses import replace

    from tvm import te

    from edgecc.measure.counting import count_ops
    from edgecc.measure.traffic import kernel_traffic
    from edgecc.schedules import schedule_kernel, vector_lanes
    from edgecc.schedules.common import schedule_source
    from edgecc.schedules.matmul_dot import DotMatmulRule, dot_instruction, one_row_instruction
    from edgecc.schedules.weight_packing import PACKED_ATTR
    from edgecc.targets import load_target

    host = load_target("host")
    if mcpu is not None:
        tvm_target = {key: value for key, value in host.tvm_target.items() if key != "mattr"}  # this CPU's flags
        host = replace(host, tvm_target={**tvm_target, "mcpu": mcpu})
    ins = one_row_instruction(dot_instruction(host))  # the AVX-512 / AVX2 kernel, not AMX's tiles
    if ins is None:
        pytest.skip("this CPU has no int8 dot-product instruction")
    m, k, n = 24, 72, 96
    a = te.placeholder((m, k), ins.activation_dtype, name="a")
    w = te.placeholder((k, n), "int8", name="w")
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute(
        (m, n), lambda i, j: te.sum(a[i, r].astype("int32") * w[r, j].astype("int32"), axis=r), name="matmul"
    )
    func = te.create_prim_func([a, w, acc])
    scheduled = schedule_kernel(
        func, "main", vector_lanes(host), host, frozenset({1}), rules=(DotMatmulRule(),), packed_attr=PACKED_ATTR
    )
    assert schedule_source(scheduled) == f"rule:{DotMatmulRule.name}"
    ops = count_ops(scheduled)
    assert 2 * m * k * n <= ops.get("int8", 0) <= 2.1 * m * k * n and "fp32" not in ops
    traffic = kernel_traffic(scheduled)
    assert traffic.bytes_read == m * k + k * n  # activations and the (packed) weight, each once
    assert traffic.bytes_written == m * n * 4


def test_a_repeated_subexpression_counts_once_as_the_compiled_code_computes_it():
    """TOPI's fast_exp repeats its clamped input through the polynomial: 85 nodes per element as a
    tree, which put MobileViT's SiLU convolutions at 1.2-1.6x the machine's peak."""
    from tvm import te, tirx, topi

    from edgecc.measure.counting import count_flops, expression_ops

    x = tirx.Var("x", "float32")
    assert expression_ops((x * 2.0) + (x * 2.0)) == {"fp32": 2}  # x*2 once, the add once
    data = te.placeholder((64,), name="x")
    func = te.create_prim_func([data, topi.fast_exp(data)])
    assert 10 * 64 <= count_flops(func) <= 30 * 64  # range reduction + a degree-7 polynomial, each op once
