"""Which CUDA a Jetson artifact is built for: the one table where CUDA 12 (JetPack 6) and 13 (JetPack 7) differ.

A CUDA target compiles device code with one toolkit, and its bundle ships a TVM CUDA runtime module
linked against the same CUDA major. The JetPack on the board fixes both:
- CUDA 13 (JetPack 7): nvcc 13 on PATH compiles a fatbin; TVM's aarch64 wheel ships the runtime
  module (libtvm_runtime_cuda.so, links libcudart.so.13).
- CUDA 12 (JetPack 6, most Orin boards in the field): NVRTC 12.2 from PyPI compiles sm_87 SASS
  (a cubin; 12.2 is the oldest CUDA of JetPack 6, so no JetPack 6 driver is older than it), and the
  runtime module is built here from TVM's source against CUDA 12 headers and checked against
  CUDA 12.2's libcudart (edgecc/bundle/cuda_runtime_build.py), because no TVM wheel ships one.
`edgecc compile --cuda 12|13` picks the row; the default is the one TVM's wheel can deploy as is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgecc.errors import EdgeccError

DEFAULT_CUDA = "13"


@dataclass(frozen=True)
class CudaToolkit:
    major: str  # "12": what `--cuda` takes
    device_compiler: str  # "nvcc" (on PATH) or "nvrtc" (a pip package, loaded with ctypes)
    # pip requirements the compile machine needs for this row (nvrtc and its headers), installed as packages
    compile_packages: tuple[str, ...]
    # where the bundle's libtvm_runtime_cuda.so comes from: "wheel" (TVM's aarch64 wheel) or "build"
    runtime: str
    jetpack: str  # said when the compile resolves the row
    # the newest CUDA release a board of this row has: device code from a newer compiler is refused
    newest_board_release: tuple[int, int] | None = None

    def to_manifest(self) -> dict:
        return {"cuda_toolkit": self.major, "cuda_runtime_module": self.runtime}


NVRTC_12 = "nvidia-cuda-nvrtc-cu12==12.2.140"
CUDA_12_HEADERS = ("nvidia-cuda-runtime-cu12==12.2.140", "nvidia-cuda-cccl-cu12==12.9.27")
# The CUDA 12 runtime module is built against the headers and libcudart.so.12 of these aarch64 wheels
# (pip download, cached; crt/ headers are only in the nvcc wheel). TVM 0.27's CUDA module names a
# CUDA 12.8 launch attribute, so 12.2 headers do not compile it; every CUDA function it calls is
# then checked to exist in CUDA 12.2's libcudart (the nvidia-cuda-runtime-cu12 12.2 package above),
# the oldest a JetPack 6 board has.
RUNTIME_BUILD_12 = {
    "wheels": ("nvidia-cuda-runtime-cu12==12.9.79", "nvidia-cuda-nvcc-cu12==12.9.86"),
    "oldest_board_cudart": ("nvidia-cuda-runtime-cu12==12.2.140", "12.2"),
}

TOOLKITS = {
    "13": CudaToolkit("13", "nvcc", (), "wheel", "JetPack 7 (CUDA 13)"),
    "12": CudaToolkit("12", "nvrtc", (NVRTC_12, *CUDA_12_HEADERS), "build", "JetPack 6 (CUDA 12.2 to 12.6)", (12, 6)),
}


def toolkit(major: str | None) -> CudaToolkit:
    try:
        return TOOLKITS[str(major or DEFAULT_CUDA)]
    except KeyError:
        raise EdgeccError(f"--cuda {major}: edgecc builds for CUDA {' or '.join(sorted(TOOLKITS))}") from None


def select_cuda(target, major: str | None):
    """The target with its CUDA row recorded (target.extra['cuda']); --cuda on a non-CUDA target is an error."""
    if target.kind != "cuda":
        if major is not None:
            raise EdgeccError(f"--cuda applies to CUDA (Jetson) targets; {target.name} is a {target.kind} target")
        return target
    chosen = toolkit(major)
    return replace(target, extra={**target.extra, "cuda": chosen.major})


def toolkit_of(target) -> CudaToolkit:
    return toolkit(target.extra.get("cuda"))
