"""The shape of a default-schedule rule: what it sees of a kernel, and what it must answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class KernelView:
    """One kernel as the rules see it. `sch` is a fresh s_tir.Schedule of the PrimFunc per rule."""

    name: str
    sch: object  # tvm.s_tir.Schedule
    blocks: list  # child blocks of the root, in order
    lanes: int  # float32 lanes of the target's widest vectors
    target: object  # edgecc.targets.Target
    constant_inputs: frozenset[int] = field(default_factory=frozenset)  # params given a constant at every call


class ScheduleRule(Protocol):
    name: str  # reported per kernel as "rule:<name>"

    def matches(self, kernel: KernelView) -> bool:
        """Whether this rule is meant for the kernel (cheap; no scheduling)."""

    def apply(self, kernel: KernelView) -> list:
        """Schedule `kernel.sch` in place; return packed-weight records [[param, n_axis, tile]]."""
