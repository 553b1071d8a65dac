"""Keep a tuned kernel only when it beats the default schedule, measured here and now.

A short search (or a record tuned before the default schedules improved) can leave a kernel
slower than its default schedule; a tuned compile must never be slower than an untuned one. Each
tuned kernel is built twice, alone, and timed on this machine with the same random arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class KernelChoice:
    name: str
    tuned_us: float
    default_us: float

    @property
    def kept(self) -> str:
        return "tuned" if self.tuned_us <= self.default_us else "default"


@dataclass
class Comparison:
    choices: list[KernelChoice] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "compared": len(self.choices),
            "kept_default": [c.name for c in self.choices if c.kept == "default"],
            "kernels": [
                {"name": c.name, "tuned_us": round(c.tuned_us, 2), "default_us": round(c.default_us, 2), "kept": c.kept}
                for c in self.choices
            ],
        }


def prefer_faster_schedules(tuned_mod, unscheduled_mod, target, default_schedule, tuned_names: list[str]):
    """(module, Comparison): tuned_mod with each tuned kernel replaced by its default schedule
    wherever that measured faster."""
    comparison = Comparison()
    defaults = default_schedule(unscheduled_mod, target)
    mod = tuned_mod.clone()
    for name in tuned_names:
        try:
            tuned_us, default_us = (_time_kernel(m[name], target) for m in (tuned_mod, defaults))
        except Exception:  # noqa: BLE001 - a kernel that cannot run alone keeps its tuned schedule
            continue
        choice = KernelChoice(name, tuned_us, default_us)
        comparison.choices.append(choice)
        if choice.kept == "default":
            mod[name] = defaults[name]
    return mod, comparison


def _time_kernel(func, target, rounds: int = 3) -> float:
    """Microseconds per call of one kernel built alone, timed as the profile times kernels."""
    import tvm

    from edgecc.measure.profile import KernelTimer

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target.tvm()).jit()
    args = [([int(d) for d in buffer.shape], str(buffer.dtype)) for buffer in func.params]
    timer = KernelTimer(lib, "main", args, tvm.cpu(), np.random.default_rng(0))
    return float(np.median([timer() for _ in range(rounds)])) * 1e6
