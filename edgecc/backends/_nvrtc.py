"""CUDA 12 device code without an nvcc 12: NVRTC from PyPI (nvidia-cuda-nvrtc-cu12) compiles TVM's CUDA C to SASS.

PyPI's nvidia-cuda-nvcc-cu12 has only ptxas, no nvcc front end, but NVRTC turns CUDA C into a cubin
for a real SM (e.g. sm_87) in one call. It is loaded with ctypes (no cuda-python needed); its
headers come from the CUDA 12 runtime wheel (cuda_fp16.h, ...) and CCCL (cuda/std/cstdint, which
TVM's generated code includes under NVRTC). The cubin holds SASS only, no PTX: the board's driver
never JIT-compiles, so it needs a driver of this NVRTC's CUDA release or newer.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edgecc.errors import ToolchainError

NVRTC_SUCCESS = 0


def package_folder(module: str, requirement: str, needed_for: str) -> Path:
    """The folder of an `nvidia.<name>` pip package, or one line saying what to install."""
    spec = importlib.util.find_spec(module) if importlib.util.find_spec("nvidia") else None
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainError(
            f"{needed_for} needs the pip package {requirement}; install it with `pip install {requirement}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def distribution_version(requirement: str) -> str:
    name = requirement.split("==")[0]
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Nvrtc:
    """One loaded libnvrtc.so.12 and the include folders its compiles use."""

    library: ctypes.CDLL
    includes: tuple[Path, ...]
    release: tuple[int, int]
    description: str  # "NVRTC 12.2 (nvidia-cuda-nvrtc-cu12 12.2.140)"

    def compile_cubin(self, code: str, arch: str) -> bytes:
        # cuda.h is host-only (TVM guards it for NVRTC, but strip a bare include too)
        code = "\n".join(line for line in code.splitlines() if line.strip() != "#include <cuda.h>")
        program = ctypes.c_void_p()
        self._check(
            self.library.nvrtcCreateProgram(ctypes.byref(program), code.encode(), b"kernels.cu", 0, None, None),
            "create the program",
        )
        options = [
            f"--gpu-architecture={arch}",  # a real SM: NVRTC emits a cubin (SASS), not PTX
            "-default-device",
            "--device-int128",
            "-U__CUDA_NO_HALF_OPERATORS__",
            "-U__CUDA_NO_HALF_CONVERSIONS__",
            "-D__NV_SILENCE_DEPRECATION_BEGIN=",
            "-D__NV_SILENCE_DEPRECATION_END=",
            "-D__NV_SILENCE_HOST_DEPRECATION_BEGIN=",
            "-D__NV_SILENCE_HOST_DEPRECATION_END=",
            *(f"-I{folder}" for folder in self.includes),
        ]
        encoded = [o.encode() for o in options]
        try:
            status = self.library.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
            if status != NVRTC_SUCCESS:
                first = next((ln for ln in self._log(program).splitlines() if "error" in ln), "no log")
                raise ToolchainError(
                    f"NVRTC {self.release[0]}.{self.release[1]} failed to compile the kernels for {arch}: {first}"
                )
            size = ctypes.c_size_t()
            self._check(self.library.nvrtcGetCUBINSize(program, ctypes.byref(size)), "size the cubin")
            cubin = ctypes.create_string_buffer(size.value)
            self._check(self.library.nvrtcGetCUBIN(program, cubin), "read the cubin")
            return cubin.raw
        finally:
            self.library.nvrtcDestroyProgram(ctypes.byref(program))

    def _log(self, program) -> str:
        size = ctypes.c_size_t()
        if self.library.nvrtcGetProgramLogSize(program, ctypes.byref(size)) != NVRTC_SUCCESS:
            return ""
        log = ctypes.create_string_buffer(size.value)
        self.library.nvrtcGetProgramLog(program, log)
        return log.value.decode(errors="replace")

    def _check(self, status: int, what: str) -> None:
        if status != NVRTC_SUCCESS:
            self.library.nvrtcGetErrorString.restype = ctypes.c_char_p
            raise ToolchainError(f"NVRTC could not {what}: {self.library.nvrtcGetErrorString(status).decode()}")


def load_nvrtc(requirements: tuple[str, ...]) -> Nvrtc:
    """NVRTC 12 and its headers from the pip packages `requirements` (nvrtc, cuda runtime, cccl, in that order)."""
    nvrtc_req, runtime_req, cccl_req = requirements
    purpose = "CUDA 12 device code (--cuda 12)"
    nvrtc_dir = package_folder("nvidia.cuda_nvrtc", nvrtc_req, purpose)
    includes = (
        package_folder("nvidia.cuda_runtime", runtime_req, purpose) / "include",
        package_folder("nvidia.cuda_cccl", cccl_req, purpose) / "include",
    )
    try:
        library = ctypes.CDLL(str(nvrtc_dir / "lib" / "libnvrtc.so.12"))
    except OSError as exc:
        raise ToolchainError(f"NVRTC from {nvrtc_req} could not be loaded: {exc}") from None
    major, minor = ctypes.c_int(), ctypes.c_int()
    library.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    release = (major.value, minor.value)
    name = nvrtc_req.split("==")[0]
    return Nvrtc(library, includes, release, f"NVRTC {release[0]}.{release[1]} ({name} {distribution_version(name)})")
