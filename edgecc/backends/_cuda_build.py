"""Ahead-of-time CUDA device code: nvcc (CUDA 13) or NVRTC (CUDA 12, _nvrtc.py) compiles TVM's CUDA C, packed
into the library.

TVM's compiler only builds a real (serializable) CUDA module when its CUDA runtime library is
loaded, and that library needs the driver's libcuda.so.1. A build machine without a GPU has no
driver, so a small stand-in libcuda (every call answers "no device") is compiled once per process
and loaded first. It is never shipped: the Jetson loads the library with its real driver.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgecc.errors import ToolchainError

NVCC_PACKAGE = "nvidia-cuda-toolkit (Debian non-free) or NVIDIA's CUDA toolkit"
_DRIVER_STUB_C = r"""
#define STUB(name) int name() { return 100; /* CUDA_ERROR_NO_DEVICE */ }
STUB(cuDeviceGetName) STUB(cuFuncSetAttribute) STUB(cuLaunchKernelEx) STUB(cuModuleGetFunction)
STUB(cuModuleLoadData) STUB(cuModuleUnload) STUB(cuTensorMapEncodeTiled)
int cuGetErrorName(int e, const char **s) { *s = "CUDA_ERROR_NO_DEVICE"; return 0; }
int cuGetErrorString(int e, const char **s) { *s = "no CUDA driver on the build machine"; return 0; }
"""
_state: dict = {}


def require_nvcc(arch: str) -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise ToolchainError(
            f"CUDA compiler 'nvcc' not found on PATH; install {NVCC_PACKAGE} "
            f"(needed to compile {arch} device code ahead of time)"
        )
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout.split()
    compute = "compute_" + arch.removeprefix("sm_")
    if listed and compute not in listed:
        raise ToolchainError(f"this nvcc ({nvcc}) cannot compile for {arch}; it knows {', '.join(listed)}")
    return nvcc


def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    release = [ln for ln in out.splitlines() if "release" in ln]
    return release[-1].strip() if release else "unknown"


def compile_fatbin(code: str, arch: str, nvcc: str) -> bytes:
    """CUDA C -> fatbin with SASS for `arch` plus its PTX, uncompressed so the cubin stays inspectable."""
    compute = "compute_" + arch.removeprefix("sm_")
    with tempfile.TemporaryDirectory(prefix="edgecc-nvcc-") as tmp:
        source, output = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.fatbin"
        source.write_text(code)
        cmd = [
            nvcc,
            "--fatbin",
            "-O3",
            "--no-compress",
            "-gencode",
            f"arch={compute},code={arch}",
            "-gencode",
            f"arch={compute},code={compute}",
            "--expt-relaxed-constexpr",
            "-U__CUDA_NO_HALF_OPERATORS__",
            "-U__CUDA_NO_HALF_CONVERSIONS__",
            "-o",
            str(output),
            str(source),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
            raise ToolchainError(f"nvcc failed to compile the generated CUDA kernels for {arch}: {first}")
        return output.read_bytes()


def ensure_cuda_module_factory() -> None:
    """Make `ffi.Module.create.cuda` available so TVM builds a serializable CUDA module."""
    import tvm_ffi

    if tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None:
        return
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        stub = _driver_stub()
        _state["stub_handle"] = ctypes.CDLL(str(stub), mode=ctypes.RTLD_GLOBAL)
        shutil.rmtree(stub.parent, ignore_errors=True)  # the loaded mapping outlives the file
    _load_tvm_cuda_runtime()
    if tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is None:
        raise ToolchainError(
            "TVM's CUDA runtime library (libtvm_runtime_cuda.so) could not be loaded; "
            "reinstall apache-tvm with CUDA support"
        )


def _driver_stub() -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise ToolchainError(
            "a host C compiler is needed to build for CUDA on a machine without a GPU "
            "driver; install it with `apt-get install gcc`"
        )
    folder = Path(tempfile.mkdtemp(prefix="edgecc-cuda-stub-"))
    source, library = folder / "libcuda_stub.c", folder / "libcuda.so.1"
    source.write_text(_DRIVER_STUB_C)
    subprocess.run(
        [cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    return library


def _load_tvm_cuda_runtime() -> None:
    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
    try:
        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(
            package="tvm", target_name="tvm_runtime_cuda", extra_lib_paths=[runtime_dir], mode="RTLD_LOCAL"
        )
    except (OSError, FileNotFoundError, RuntimeError) as exc:
        raise ToolchainError(f"TVM's CUDA runtime library could not be loaded: {exc}") from None


@contextmanager
def device_compile_callback(compile_source, record: dict):
    """While active, TVM hands each CUDA source to `compile_source(code) -> bytes` (nvcc's fatbin or
    NVRTC's cubin); the previous callback is restored after."""
    import tvm_ffi

    previous = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)

    def compile_kernels(code, *_target):
        record["sources"] = record.get("sources", 0) + 1
        record["cuda_source_bytes"] = record.get("cuda_source_bytes", 0) + len(code)
        return bytearray(compile_source(code))

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_kernels, override=True)
    try:
        yield record
    finally:
        if previous is not None:
            tvm_ffi.register_global_func("tvm_callback_cuda_compile", previous, override=True)
