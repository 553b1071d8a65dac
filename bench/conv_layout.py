"""Why NHWC: the pointwise (1x1) convolutions of MobileViT-S / SwiftFormer-XS in both layouts, each
under the default schedule it would get, timed single-threaded in thread CPU time (robust on a
shared machine), interleaved.

    python bench/conv_layout.py

NHWC: out[pixels, Cout] = x[pixels, Cin] @ W[Cin, Cout]: the conv rule's register tile over the
constant weight, repacked at compile time into panels (edgecc/schedules/conv.py).
NCHW: out[Cout, pixels] = W[Cout, Cin] @ x[Cin, pixels]: the same register tile (the matmul rule),
but the streamed operand is now the activation, which cannot be repacked at compile time: every
reduction step reads 48 floats from a row `pixels` floats away from the last (the layout the
matmul schedule measured 2.5x slower before its weights were packed).
"""

from __future__ import annotations

import os
import time

os.environ["TVM_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import tvm  # noqa: E402
from tvm import te, topi  # noqa: E402

from edgecc.schedules import CPU_RULES, schedule_kernel, vector_lanes  # noqa: E402
from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array  # noqa: E402
from edgecc.targets import load_target  # noqa: E402

# (pixels as H x W, Cin, Cout): MobileViT-S's and SwiftFormer-XS's heaviest pointwise convolutions
SHAPES = [
    ((64, 64), 64, 256),
    ((64, 64), 256, 64),
    ((128, 128), 32, 128),
    ((32, 32), 96, 384),
    ((56, 56), 48, 192),
    ((28, 28), 224, 64),
    ((16, 16), 128, 512),
]


def nhwc_conv(hw, cin, cout):
    x = te.placeholder((1, *hw, cin), "float32", name="x")
    w = te.placeholder((1, 1, cin, cout), "float32", name="w")
    return te.create_prim_func([x, w, topi.nn.conv(x, w, 1, 0, 1, 1, "NHWC", "HWIO")]), 1


def nchw_matmul(hw, cin, cout):
    pixels = hw[0] * hw[1]
    w = te.placeholder((cout, cin), "float32", name="w")
    x = te.placeholder((cin, pixels), "float32", name="x")
    k = te.reduce_axis((0, cin), "k")
    out = te.compute((cout, pixels), lambda o, p: te.sum(w[o, k] * x[k, p], axis=k), name="matmul")
    return te.create_prim_func([w, x, out]), 0


def timed(func, constant, target, lanes, rng):
    scheduled = schedule_kernel(func, "k", lanes, target, frozenset({constant}), CPU_RULES)
    arrays = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in func.params]
    for position, axis, tile in (scheduled.attrs or {}).get(PACKED_ATTR, []):
        arrays[int(position)] = pack_array(arrays[int(position)], int(axis), int(tile))
    lib = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target=target.tvm()).jit()
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    fn = lib["main"]
    fn(*tensors)
    start = time.thread_time()
    fn(*tensors)
    runs = max(1, int(0.02 / max(time.thread_time() - start, 1e-6)))

    def sample():
        begin = time.thread_time()
        for _ in range(runs):
            fn(*tensors)
        return (time.thread_time() - begin) / runs

    return str(scheduled.attrs["edgecc.schedule"]), sample


def main():
    target = load_target("host")
    lanes = vector_lanes(target)
    rng = np.random.default_rng(0)
    print(
        f"{target.board.soc}, LLVM {target.tvm_target.get('mcpu')}, 1 thread, thread CPU time, medians of "
        "interleaved samples; GFLOP/s = 2 x MACs / time\n"
    )
    print("| pixels | Cin | Cout | NHWC (packed weights) GFLOP/s | NCHW (activation streamed) GFLOP/s | NHWC speedup |")
    print("|---|---:|---:|---:|---:|---:|")
    for hw, cin, cout in SHAPES:
        flops = 2 * hw[0] * hw[1] * cin * cout
        (src_a, a), (src_b, b) = (
            timed(*nhwc_conv(hw, cin, cout), target, lanes, rng),
            timed(*nchw_matmul(hw, cin, cout), target, lanes, rng),
        )
        assert src_a == "rule:conv2d-nhwc-register-tile" and src_b == "rule:matmul", (src_a, src_b)
        samples_a, samples_b = [], []
        end = time.perf_counter() + 2.0
        while time.perf_counter() < end:
            samples_a.append(a())
            samples_b.append(b())
        ta, tb = float(np.median(samples_a)), float(np.median(samples_b))
        row = f"| {hw[0]}x{hw[1]} | {cin} | {cout} | {flops / ta / 1e9:.0f} | {flops / tb / 1e9:.0f} | {tb / ta:.2f}x |"
        print(row)


if __name__ == "__main__":
    main()
