"""Default GPU schedules: TVM's dlight rules for every kernel that tuning left unscheduled.

An unscheduled GPU kernel has no thread binding and fails to build ("Did you forget to bind?").
dlight skips PrimFuncs already marked `tirx.is_scheduled`, which is how tuned kernels are kept.
"""

from __future__ import annotations


def apply_gpu_default_schedules(mod, target):
    from tvm.s_tir import dlight as dl

    rules = dl.ApplyDefaultSchedule(
        dl.gpu.Matmul(),
        dl.gpu.GEMV(),
        dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(),
        dl.gpu.Fallback(),
    )
    with target.tvm():
        return rules(mod)


def unscheduled_kernels(mod) -> list[str]:
    """Names of PrimFuncs that carry no schedule mark (for tests and diagnostics)."""
    from tvm import tirx

    return sorted(gv.name_hint for gv, func in mod.functions.items()
                  if isinstance(func, tirx.PrimFunc) and not _is_scheduled(func))


def _is_scheduled(func) -> bool:
    attrs = func.attrs
    return attrs is not None and "tirx.is_scheduled" in attrs and bool(attrs["tirx.is_scheduled"])
