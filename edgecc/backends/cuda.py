"""NVIDIA Jetson: CUDA kernels compiled ahead of time (nvcc 13 or NVRTC 12), aarch64 host code, one shared library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecc.backends import Backend, Built, PackagedLibrary, build_relax, register
from edgecc.backends._cuda_build import (
    compile_fatbin,
    device_compile_callback,
    ensure_cuda_module_factory,
    nvcc_version,
    require_nvcc,
)
from edgecc.backends._elf import cuda_device_code, library_machine
from edgecc.backends.cuda_toolkits import toolkit_of
from edgecc.errors import ToolchainError
from edgecc.schedules.gpu import apply_gpu_default_schedules

LIBRARY_NAME = "model.so"


@dataclass(frozen=True)
class DeviceCompiler:
    compile: object  # (cuda_source: str) -> bytes (fatbin or cubin)
    description: str  # what the manifest and the compile log say compiled the device code
    release: tuple[int, int]  # its CUDA release
    device_code: str  # the manifest's one-line description of what model.so holds


def _nvcc(arch: str, _toolkit) -> DeviceCompiler:
    import re

    nvcc = require_nvcc(arch)
    version = nvcc_version(nvcc)
    found = re.search(r"release (\d+)\.(\d+)", version)
    release = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    return DeviceCompiler(
        lambda code: compile_fatbin(code, arch, nvcc), version, release, f"CUDA fatbin ({arch} SASS + PTX), nvcc"
    )


def _nvrtc(arch: str, toolkit) -> DeviceCompiler:
    from edgecc.backends._nvrtc import load_nvrtc

    nvrtc = load_nvrtc(toolkit.compile_packages)
    return DeviceCompiler(
        lambda code: nvrtc.compile_cubin(code, arch),
        nvrtc.description,
        nvrtc.release,
        f"CUDA cubin ({arch} SASS, no PTX), {nvrtc.description}",
    )


DEVICE_COMPILERS = {"nvcc": _nvcc, "nvrtc": _nvrtc}


def build(mod, target):
    arch = target.tvm_target.get("arch")
    if not arch:
        from edgecc.errors import TargetError

        raise TargetError(f"{target.source}: field 'tvm.target.arch' (e.g. \"sm_87\") is required for CUDA targets")
    toolkit = toolkit_of(target)
    compiler = DEVICE_COMPILERS[toolkit.device_compiler](arch, toolkit)
    newest = toolkit.newest_board_release
    if newest is not None and compiler.release > newest:
        raise ToolchainError(
            f"{compiler.description} makes device code that needs a CUDA {compiler.release[0]}.{compiler.release[1]} "
            f"driver, newer than any {toolkit.jetpack}; install {toolkit.compile_packages[0]}"
        )
    target.toolchain.require()  # fail before the build when the host cross-compiler is missing
    ensure_cuda_module_factory()
    record: dict = {
        "device_compiler": compiler.description,
        "cuda_release": f"{compiler.release[0]}.{compiler.release[1]}",
        "device_code": compiler.device_code,
        **toolkit.to_manifest(),
    }
    if toolkit.device_compiler == "nvcc":
        record["nvcc"] = compiler.description  # read by bundles from before cuda_release existed
    with device_compile_callback(compiler.compile, record):
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
        "device_code": f"{record.get('device_code', 'CUDA device code')}, compiled ahead of time",
        "cuda_arch": arch,
        "cubin_archs": device["cubin_archs"],
        "cubin_cuda": device["cubin_cuda"],
        **{
            k: record[k]
            for k in ("cuda_toolkit", "cuda_release", "device_compiler", "cuda_runtime_module", "nvcc")
            if k in record
        },
    }
    missing = []
    if arch not in device["cubin_archs"]:
        missing.append(f"no {arch} device code was found in {LIBRARY_NAME}")
    runtime = (
        "libtvm_runtime_cuda.so built for CUDA 12 (`edgecc deploy --tvm-source DIR` builds it)"
        if record.get("cuda_runtime_module") == "build"
        else "libtvm_runtime_cuda.so from TVM's aarch64 wheel"
    )
    return PackagedLibrary(
        library=LIBRARY_NAME,
        files=[LIBRARY_NAME],
        contents=contents,
        load=(
            f"On the Jetson (a JetPack with a CUDA {record.get('cuda_release', '?')} driver or newer), with a TVM 0.27 "
            f"runtime built with CUDA (libtvm_runtime.so + {runtime}; NVRTC and nvcc are not needed), or "
            f"`edgecc deploy` for a bundle that has it: lib = tvm.runtime.load_module('{LIBRARY_NAME}'); "
            "vm = tvm.relax.VirtualMachine(lib, tvm.cuda(0))"
        ),
        loadable=not missing,
        missing=missing,
    )


register(
    Backend(kind="cuda", default_schedule=apply_gpu_default_schedules, build=build, package=package, device="cuda")
)
