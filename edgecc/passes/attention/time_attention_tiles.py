"""INT8 attention only where it is faster: time a plan's INT8 kernel against its BF16 one (AMX) or
its FP32 one (VNNI), here.

The INT8 products need scales the BF16 ones do not (per-row, per-key and per-column maxima, and the
quantizing packs), and on the AMX Xeon they measured slower than BF16 although their instructions
are twice as fast: the products are a small part of the kernel; the exps and the softmax are not.
So, as the dense layers are timed against FP32, each distinct attention plan is compiled both ways
and timed in alternating rounds on this machine, and the faster is kept (BF16 on a tie: it is the
more precise). On VNNI, without BF16 tiles, the rival is the FP32 kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecc.passes.precision.low_precision_timing import fastest_of_rounds
from edgecc.schedules.attention import INT8_PRODUCTS


@dataclass
class TileTiming:
    plan: str  # shapes of the plan's Q, K^T and V
    us: dict  # products ("int8", "int8-vnni", "bf16", "fp32") -> microseconds, the fastest round
    kernels: dict = field(repr=False)  # products -> the timed PrimFunc
    attentions: int = 0  # of the module with this plan

    @property
    def kept(self) -> str:
        return min(self.us, key=lambda p: (self.us[p], p in INT8_PRODUCTS))  # a tie: the more precise

    @property
    def int8(self) -> str:
        return next(p for p in self.us if p in INT8_PRODUCTS)

    @property
    def rival(self) -> str | None:
        return next((p for p in self.us if p not in INT8_PRODUCTS), None)

    def to_dict(self) -> dict:
        us = {f"{'int8' if p == self.int8 else p}_us": round(v, 2) for p, v in self.us.items()}
        return {"plan": self.plan, "attentions": self.attentions, "int8": self.int8, **us, "kept": self.kept}

    def summary(self) -> str:
        rival = f" / {self.rival.upper()} {self.us[self.rival]:.1f}" if self.rival else ""
        return f"{self.plan}: INT8 {self.us[self.int8]:.1f}{rival} us, {self.kept}"


def time_plan(plan, kernels: dict, out_shape, target) -> TileTiming:
    """Time `kernels` ({precision: PrimFunc} of `plan`, writing `out_shape`) on this machine."""
    shapes = " ".join("x".join(str(int(d)) for d in chain.shape) for chain in (plan.q, plan.kt, plan.v))
    return TileTiming(shapes, time_kernels(kernels, plan, out_shape, target), kernels)


def time_kernels(kernels: dict, plan, out_shape, target) -> dict:
    """{precision: fastest round's microseconds} of `kernels` ({precision: PrimFunc} of one plan)."""
    import tvm

    from edgecc.passes._layout_chains import static_shape

    rng = np.random.default_rng(0)
    shapes = [plan.q.shape, plan.kt.shape, plan.v.shape]
    if plan.bias is not None:
        shapes.append(static_shape(plan.bias))
    arrays = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in s]).astype(np.float32)) for s in shapes]
    runs = {}
    for precision, kernel in kernels.items():
        library = tvm.tirx.build(kernel.with_attr("global_symbol", "attention"), target=target)
        out = tvm.runtime.tensor(np.zeros([int(d) for d in out_shape], np.float32))
        timer = library.time_evaluator("attention", tvm.cpu(), number=20, repeat=1, min_repeat_ms=10)
        runs[precision] = lambda timer=timer, out=out: timer(*arrays, out).mean * 1e6
    return fastest_of_rounds(runs)
