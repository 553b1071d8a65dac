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


def test_roofline_placement_by_hand():
    # 1 GFLOP over 0.1 GB in 0.1 s: intensity 10 FLOP/B; ridge 100/20 = 5 -> compute-bound, 10 GFLOP/s = 10 %
    r = roofline(1e9, 1e8, 0.1, peak_gflops=100.0, bandwidth_gbs=20.0)
    assert r["arithmetic_intensity"] == 10 and r["bound"] == "compute"
    assert r["achieved_gflops"] == pytest.approx(10.0) and r["pct_of_peak_compute"] == pytest.approx(10.0)
    m = roofline(1e8, 1e9, 0.1, peak_gflops=100.0, bandwidth_gbs=20.0)
    assert m["bound"] == "memory" and m["attainable_gflops"] == pytest.approx(2.0)
    assert m["pct_of_peak_bandwidth"] == pytest.approx(50.0)
