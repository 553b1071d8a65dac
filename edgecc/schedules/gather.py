"""Embedding lookups (take): rows copied in parallel, each row's copy vectorised over the row.

The same loop shape as the elementwise rule (inline into the last stage, parallel rows, vector
lanes along the contiguous axis), kept as its own family so the report says which kernels gather.
"""

from __future__ import annotations

from edgecc.schedules.elementwise import ElementwiseRule, is_gather, no_reduction
from edgecc.schedules.rule import KernelView


class GatherRule(ElementwiseRule):
    name = "gather"

    def matches(self, kernel: KernelView) -> bool:
        return no_reduction(kernel) and is_gather(kernel)
