"""Register only the tensor intrinsics the tuned target can use.

MetaSchedule's TuneContext imports `tvm.s_tir.tensor_intrin`, whose package init parses the
intrinsics of every architecture (20-60 s on a 2-core machine). Each architecture's module alone
takes well under a second (x86 0.2 s, arm_cpu 1 s; cuda 8 s). While tuning, the package is stood in
for by a module with the real search path, so `import tvm.s_tir.tensor_intrin.<arch>` still works,
and only the target's own intrinsics are registered. Afterwards the stand-in is removed: a later
plain import runs the real package init and reuses the submodules already loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import sys
import types
from contextlib import contextmanager

PACKAGE = "tvm.s_tir.tensor_intrin"
# TVM target kind -> intrinsic modules its schedule rules may name.
BY_KIND = {"cuda": ("cuda",), "rocm": ("rocm",), "metal": ("metal",), "hexagon": ("hexagon",)}
# LLVM CPU targets: first component of the triple -> intrinsic modules.
BY_CPU = {
    "x86_64": ("x86",),
    "i686": ("x86",),
    "aarch64": ("arm_cpu",),
    "arm64": ("arm_cpu",),
    "armv7": ("arm_cpu",),
    "arm": ("arm_cpu",),
    "riscv64": ("riscv_cpu",),
    "riscv32": ("riscv_cpu",),
    "hexagon": ("hexagon",),
}


def modules_for(tvm_target) -> tuple[str, ...] | None:
    """The intrinsic modules for a target, or None when unknown (then the whole package loads)."""
    kind = tvm_target.kind.name
    if kind in BY_KIND:
        return BY_KIND[kind]
    if kind != "llvm":
        return None
    triple = str(tvm_target.attrs.get("mtriple", "") or "") or platform.machine()
    return BY_CPU.get(triple.split("-")[0])


@contextmanager
def only_target_intrinsics(tvm_target):
    names = modules_for(tvm_target)
    if PACKAGE in sys.modules or names is None:
        yield
        return
    spec = importlib.util.find_spec(PACKAGE)
    stand_in = types.ModuleType(PACKAGE)
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__package__ = PACKAGE
    sys.modules[PACKAGE] = stand_in
    try:
        for name in names:
            importlib.import_module(f"{PACKAGE}.{name}")
        yield
    finally:
        if sys.modules.get(PACKAGE) is stand_in:
            del sys.modules[PACKAGE]
