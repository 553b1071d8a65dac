"""CPU boards through LLVM: the host itself, or aarch64 boards cross-compiled with the Debian gcc."""

from __future__ import annotations

import platform
from pathlib import Path

from edgecc.backends import Backend, Built, PackagedLibrary, build_relax, register

LIBRARY_NAME = "model.so"


def default_schedule(mod, target):
    from edgecc.schedules import apply_cpu_default_schedules

    return apply_cpu_default_schedules(mod, target)


def kernel_schedule(func, name, target, constant_inputs):
    from edgecc.schedules import cpu_kernel_schedule

    return cpu_kernel_schedule(func, name, target, constant_inputs)


def package(built: Built, target, folder: Path) -> PackagedLibrary:
    folder = Path(folder)
    fcompile = None
    if target.toolchain is not None and not _is_native(target):
        from tvm.support import cc

        fcompile = cc.cross_compiler(target.toolchain.require())
    path = folder / LIBRARY_NAME
    if fcompile is None:
        built.executable.export_library(str(path))
    else:
        built.executable.export_library(str(path), fcompile=fcompile)
    arch = target.arch
    return PackagedLibrary(
        library=LIBRARY_NAME,
        files=[LIBRARY_NAME],
        contents={
            "format": "ELF shared library",
            "arch": arch,
            "weights": "embedded as constants",
            "device_code": "none (CPU)",
        },
        load=(
            "Load with the TVM runtime alone: "
            "lib = tvm.runtime.load_module('model.so'); vm = tvm.relax.VirtualMachine(lib, tvm.cpu())"
        ),
    )


def _is_native(target) -> bool:
    return target.arch == platform.machine() and "mtriple" not in target.tvm_target


register(
    Backend(
        kind="llvm",
        default_schedule=default_schedule,
        kernel_schedule=kernel_schedule,
        build=build_relax,
        package=package,
        device="cpu",
        cpu_kernels=True,
        nhwc_convs=True,
    )
)
