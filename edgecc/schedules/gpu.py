"""Default GPU schedules: TVM's dlight rules for every kernel that tuning left unscheduled.

An unscheduled GPU kernel has no thread binding and fails to build ("Did you forget to bind?").
dlight skips PrimFuncs already marked `tirx.is_scheduled`, which is how tuned kernels are kept.
"""

from __future__ import annotations


def apply_gpu_default_schedules(mod, target):
    from tvm.s_tir import dlight as dl

    rules = dl.ApplyDefaultSchedule(
        _matmul_rule_without_int8_tensor_cores(),
        dl.gpu.GEMV(),
        dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(),
        dl.gpu.Fallback(),
    )
    if target.tvm_target.get("kind") == "metal":
        _import_metal_intrinsics_alone()
    unscheduled = unscheduled_kernels(mod)
    with target.tvm():
        scheduled = rules(mod.clone())  # dlight rewrites the module it is given in place
    return _mark_dlight_kernels(unscheduled, scheduled)


def _mark_dlight_kernels(unscheduled: list[str], after):
    """Label the kernels dlight scheduled (those unscheduled before) with their schedule's source."""
    from edgecc.schedules.common import SOURCE_ATTR, is_scheduled

    after = after.clone()
    for name in unscheduled:
        new = after[name]
        if is_scheduled(new) and not (new.attrs and SOURCE_ATTR in new.attrs):
            after[name] = new.with_attr(SOURCE_ATTR, "dlight")
    return after


def _import_metal_intrinsics_alone() -> None:
    """dlight's Metal matmul rule imports `tvm.s_tir.tensor_intrin.metal`; the package's __init__
    also parses every CUDA/x86/ARM intrinsic, about 60 s on a 2-core machine. Load the Metal
    submodule under a bare stand-in package (1-2 s), then drop the stand-in so a later import of the
    package runs its real __init__ (which never imports `.metal`, so nothing registers twice).
    """
    import importlib
    import importlib.util
    import sys
    import types

    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    stand_in = types.ModuleType(name)
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__spec__ = spec
    sys.modules[name] = stand_in
    try:
        importlib.import_module(f"{name}.metal")
    finally:
        del sys.modules[name]
        import tvm.s_tir

        if getattr(tvm.s_tir, "tensor_intrin", None) is stand_in:
            delattr(tvm.s_tir, "tensor_intrin")


def _matmul_rule_without_int8_tensor_cores():
    """dlight's Matmul rule, except that INT8 matmuls skip its tensor-core path.

    In TVM 0.27 that path (sm_70+, int8 x int8 -> int32) schedules fine but the CUDA code generator
    then fails ("fragment_info_" check) on TinyBERT-4 INT8. Scheduling those kernels as if for a
    pre-Volta arch keeps dlight on its ordinary tiled SIMT schedule; FP16 tensor cores still apply.
    """
    from tvm.s_tir import dlight as dl

    class MatmulWithoutInt8TensorCores(dl.gpu.Matmul):
        def apply(self, func, target, tunable):
            if target.kind.name == "cuda" and _has_int8_buffer(func) and "arch" in target.attrs:
                target = _without_arch(target)
            return super().apply(func, target, tunable)

    return MatmulWithoutInt8TensorCores()


def _has_int8_buffer(func) -> bool:
    from tvm import tirx

    # TVM 0.27's Python API has no TIR visitor; the printed kernel names every buffer's dtype.
    return isinstance(func, tirx.PrimFunc) and '"int8"' in func.script()


def _without_arch(target):
    import json

    import tvm

    spec = json.loads(str(target))  # a TVM 0.27 target prints as its JSON dict
    spec = {k: v for k, v in spec.items() if k not in ("host", "tag", "keys")}
    spec["arch"] = "sm_61"  # below dlight's sm_70 tensor-core threshold; only steers the schedule
    return tvm.target.Target(spec)


def unscheduled_kernels(mod) -> list[str]:
    """Names of PrimFuncs that carry no schedule mark."""
    from edgecc.schedules.common import schedule_summary

    return schedule_summary(mod).unscheduled
