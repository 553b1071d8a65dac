"""What a Jetson bundle needs from the board's CUDA, read from the artifact and the shipped libraries.

Two things must match the board: the device code in model.so (the CUDA release that compiled it,
nvcc 13 or NVRTC 12; an older driver cannot load it) and TVM's CUDA runtime module
(libtvm_runtime_cuda.so, which links one libcudart soname). Both are read, not assumed: the
compiler's release from the manifest, the cudart soname from the library's DT_NEEDED entries, and
for a module edgecc built (cuda_runtime_build.py) the oldest CUDA its functions were checked against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgecc.bundle.elf_needs import read_elf_needs
from edgecc.errors import EdgeccError

# Which JetPack ships which CUDA major on Jetson Orin (NVIDIA's JetPack release notes).
JETPACK_FOR_CUDA = {
    11: "JetPack 5.x (L4T r35, CUDA 11.4)",
    12: "JetPack 6.x (L4T r36, CUDA 12.2 to 12.6)",
    13: "JetPack 7.x (L4T r38, CUDA 13); JetPack 7.0 itself was released for Jetson Thor, so check that your "
    "JetPack 7 release lists your Orin module",
}


@dataclass(frozen=True)
class CudaNeeds:
    nvcc_release: tuple[int, int]  # the CUDA release that compiled model.so's device code (nvcc or NVRTC)
    runtime_library: str  # the libcudart soname libtvm_runtime_cuda.so links, e.g. libcudart.so.13
    device_arch: str  # e.g. sm_87
    device_compiler: str = "nvcc"  # what compiled the device code, as the manifest says
    runtime_release: tuple[int, int] | None = None  # oldest CUDA the runtime module was checked against

    @property
    def major(self) -> int:
        return self.nvcc_release[0]

    @property
    def min_driver_version(self) -> int:
        """cuDriverGetVersion's encoding (1000 * major + 10 * minor) of the oldest driver that loads the bundle.

        SASS made by CUDA X.Y loads on an X.Y driver or newer (no PTX JIT is needed); the runtime module
        needs its libcudart major, or the oldest release its functions were checked against."""
        runtime = self.runtime_release or (cudart_major(self.runtime_library), 0)
        return max(_encoded(self.nvcc_release), _encoded(runtime))

    @property
    def jetpack(self) -> str:
        return JETPACK_FOR_CUDA.get(self.major, f"a JetPack release with CUDA {self.major}")

    def to_model_json(self) -> dict:
        described = {
            "min_driver_version": self.min_driver_version,
            "runtime_library": self.runtime_library,
            "device_code": self.device_arch,
            "cuda_release": f"{self.nvcc_release[0]}.{self.nvcc_release[1]}",
            "device_compiler": self.device_compiler,
            "jetpack": self.jetpack,
        }
        if self.device_compiler.startswith("Cuda compilation tools"):  # nvcc; the key bundles had before NVRTC
            described["nvcc_release"] = described["cuda_release"]
        return described


def _encoded(release: tuple[int, int]) -> int:
    return 1000 * release[0] + 10 * release[1]


def device_release(contents: dict) -> tuple[int, int]:
    """The CUDA release of model.so's device code: the manifest's cuda_release, or (older manifests) nvcc's banner."""
    match = re.fullmatch(r"(\d+)\.(\d+)", str(contents.get("cuda_release", "")))
    if match:
        return int(match.group(1)), int(match.group(2))
    return nvcc_release(contents.get("nvcc", ""))


def nvcc_release(text: str) -> tuple[int, int]:
    """'Cuda compilation tools, release 13.0, V13.0.88' -> (13, 0)."""
    match = re.search(r"release (\d+)\.(\d+)", text or "")
    if not match:
        raise EdgeccError(
            f"the artifact's manifest does not say which nvcc compiled its device code ({text!r}); "
            "recompile it with this edgecc"
        )
    return int(match.group(1)), int(match.group(2))


def cudart_major(soname: str) -> int:
    match = re.fullmatch(r"libcudart\.so\.(\d+)", soname)
    return int(match.group(1)) if match else 0


def cudart_of(runtime_module: Path) -> str:
    """The libcudart soname that TVM's CUDA runtime module was linked against."""
    names = [n for n in read_elf_needs(runtime_module).needed if n.startswith("libcudart.so.")]
    if not names:
        raise EdgeccError(f"{runtime_module} does not link libcudart; it is not TVM's CUDA runtime module")
    return names[0]


def cuda_needs(manifest: dict, runtime_module: Path, runtime_record: dict | None = None) -> CudaNeeds:
    """`runtime_record`: the build record of a module edgecc built (cuda_runtime_build.build_record)."""
    contents = manifest.get("contents", {})
    record = runtime_record or {}
    checked = record.get("oldest_cudart", {})
    # the oldest CUDA whose libcudart defines every function the module calls, else its headers' release
    complete = checked.get("checked") and not checked.get("missing")
    release = checked["release"] if complete else record.get("cuda_release")
    runtime_release = tuple(int(part) for part in release.split(".")) if release else None
    needs = CudaNeeds(
        device_release(contents),
        cudart_of(runtime_module),
        contents.get("cuda_arch", "unknown"),
        contents.get("device_compiler") or contents.get("nvcc", "nvcc"),
        runtime_release,
    )
    if cudart_major(needs.runtime_library) != needs.major:
        raise EdgeccError(
            f"model.so's device code was compiled by CUDA {needs.nvcc_release[0]}.{needs.nvcc_release[1]}, but the "
            f"CUDA runtime module {runtime_module.name} links {needs.runtime_library}: one board cannot satisfy "
            "both. Pass --cuda-runtime with a libtvm_runtime_cuda.so from the same TVM version, "
            f"built for CUDA {needs.major}, "
            f"or recompile with `--cuda {cudart_major(needs.runtime_library)}`"
        )
    return needs
