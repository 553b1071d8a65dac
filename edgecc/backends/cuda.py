"""NVIDIA Jetson: CUDA kernels compiled ahead of time by nvcc, aarch64 host code, one shared library."""

from __future__ import annotations

from pathlib import Path

from edgecc.backends import Backend, Built, PackagedLibrary, build_relax, register
from edgecc.backends._cuda_build import ensure_cuda_module_factory, nvcc_compile_callback, nvcc_version, require_nvcc
from edgecc.backends._elf import cuda_device_code, library_machine
from edgecc.schedules.gpu import apply_gpu_default_schedules

LIBRARY_NAME = "model.so"


def build(mod, target):
    arch = target.tvm_target.get("arch")
    if not arch:
        from edgecc.errors import TargetError

        raise TargetError(f"{target.source}: field 'tvm.target.arch' (e.g. \"sm_87\") is required for CUDA targets")
    nvcc = require_nvcc(arch)
    target.toolchain.require()  # fail before the build when the host cross-compiler is missing
    ensure_cuda_module_factory()
    record: dict = {"nvcc": nvcc_version(nvcc)}
    with nvcc_compile_callback(arch, nvcc, record):
        built = build_relax(mod, target)
    built.details.update(record)
    return built


def package(built: Built, target, folder: Path) -> PackagedLibrary:
    from tvm.support import cc

    folder = Path(folder)
    path = folder / LIBRARY_NAME
    built.executable.export_library(str(path), fcompile=cc.cross_compiler(target.toolchain.require()))
    arch = target.tvm_target["arch"]
    device = cuda_device_code(path)
    record = built.details
    contents = {
        "format": "ELF shared library",
        "arch": library_machine(path),
        "weights": "embedded as constants",
        "device_code": f"CUDA fatbin ({', '.join(device['cubin_archs']) or 'no cubin'} SASS + PTX), "
        "compiled ahead of time by nvcc",
        "cuda_arch": arch,
        "cubin_archs": device["cubin_archs"],
        "nvcc": record.get("nvcc", "unknown"),
    }
    missing = []
    if arch not in device["cubin_archs"]:
        missing.append(f"no {arch} device code was found in {LIBRARY_NAME}")
    return PackagedLibrary(
        library=LIBRARY_NAME,
        files=[LIBRARY_NAME],
        contents=contents,
        load=(
            "On the Jetson (JetPack with a CUDA driver), with a TVM 0.27 runtime built with CUDA "
            "(libtvm_runtime.so + libtvm_runtime_cuda.so; NVRTC and nvcc are not needed): "
            f"lib = tvm.runtime.load_module('{LIBRARY_NAME}'); "
            "vm = tvm.relax.VirtualMachine(lib, tvm.cuda(0))"
        ),
        loadable=not missing,
        missing=missing,
    )


register(
    Backend(kind="cuda", default_schedule=apply_gpu_default_schedules, build=build, package=package, device="cuda")
)
