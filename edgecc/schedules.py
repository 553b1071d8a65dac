"""Default schedules for kernels that no tuning record covers.

CPU rules live here (and their parameters in `schedules/`); GPU kinds use dlight.
"""

from __future__ import annotations


def apply_cpu_default_schedules(mod, target):
    """Placeholder until hand-written CPU rules land: TVM's naive lowering is used as is."""
    return mod
