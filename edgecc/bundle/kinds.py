"""Per target kind, what a bundle holds: the one place where deploying differs between kinds.

The platform (os, arch) a bundle's libraries are for comes from the artifact's target; this table
says which runtime libraries the C API links, which device runtime module it loads at open, and
whether the C API and example can be built here (with the target's cross compiler) or only on
the board's own OS.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from edgecc.errors import EdgeccError, ToolchainError


@dataclass(frozen=True)
class DeployKind:
    kind: str
    device: str  # model.json "device": what the C API opens
    libraries: tuple[str, ...]  # TVM runtime libraries the C API links (suffix added per OS)
    device_runtime: tuple[str, ...] = ()  # loaded by the C API at open, after its device check
    builds_here: bool = True  # bin/ and lib/libedgecc_model are prebuilt with the target's g++
    has_c_api: bool = True  # False where TVM runs the model through another runtime (Hexagon RPC)
    needs_cuda: bool = False  # model.json states, and the C API checks, the CUDA driver and runtime
    why_not_built: str = ""  # said in the README when builds_here is False

    def compiler(self, target: dict) -> str:
        """The C++ compiler that builds for the board: the target's cross g++, or this machine's."""
        toolchain = target.get("toolchain") or {}
        name = toolchain.get("compiler") or "g++"
        found = shutil.which(name)
        if found is None:
            package = toolchain.get("package") or "g++"
            raise ToolchainError(
                f"the C++ compiler '{name}' for {target['name']} is not installed; "
                f"install it with `apt-get install {package}`"
            )
        return found


_TVM = ("libtvm_ffi", "libtvm_runtime")
KINDS = {
    "llvm": DeployKind("llvm", "cpu", _TVM),
    "cuda": DeployKind("cuda", "cuda", _TVM, device_runtime=("libtvm_runtime_cuda",), needs_cuda=True),
    "metal": DeployKind(
        "metal",
        "metal",
        _TVM,
        device_runtime=("libtvm_runtime_metal",),
        builds_here=False,
        why_not_built="no macOS SDK exists on Linux, so the C API and edgecc-run are built on "
        "the Mac with the CMake project in src/ (a minute with Xcode's clang)",
    ),
    "hexagon": DeployKind(
        "hexagon",
        "hexagon",
        (),
        builds_here=False,
        has_c_api=False,
        why_not_built="the Hexagon TVM runtime exists only when built with the Hexagon SDK, "
        "which cannot be redistributed or installed here",
    ),
}


def deploy_kind(kind: str) -> DeployKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise EdgeccError(
            f"edgecc deploy does not know target kind '{kind}' (known: {', '.join(sorted(KINDS))})"
        ) from None
