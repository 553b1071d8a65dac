"""The TVM runtime libraries a bundle ships, taken from the TVM wheel built for the board's platform.

Only runtime libraries: libtvm_ffi, libtvm_runtime and a device runtime module (CUDA, Metal) when
the target needs one; never the 240 MB compiler (libtvm_compiler). They must come from the same
TVM and tvm-ffi versions that compiled model.so, so the wheels are those installed here:
- this machine's platform: the installed packages;
- linux aarch64: the emulated board's cache (`edgecc board setup`) when it holds those versions;
- otherwise `pip download` of the two wheels for that platform, unpacked once into
  $EDGECC_CACHE/runtime-libs/<platform>-tvm<version>/ (only the libraries and licenses are kept).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform as host_platform
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgecc.errors import ToolchainError
from edgecc.platform_wheels import download_wheels

TVM_DIST, FFI_DIST = "apache-tvm", "apache-tvm-ffi"
# pip --platform tags per (os, arch), newest first, as edgecc/board/setup.py uses for aarch64.
PIP_PLATFORMS = {
    ("linux", "x86_64"): ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    ("linux", "aarch64"): [
        "manylinux_2_28_aarch64",
        "manylinux_2_27_aarch64",
        "manylinux_2_24_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
    ],
    ("macos", "arm64"): ["macosx_11_0_arm64"],
}
SUFFIX = {"linux": ".so", "macos": ".dylib"}


@dataclass(frozen=True)
class RuntimeLibraries:
    """Where one platform's runtime libraries are, and which TVM they belong to."""

    os: str
    arch: str
    folder: Path  # holds tvm/lib/ and tvm_ffi/lib/ (a site-packages folder or the cache)
    source: str  # said in the README: where the libraries came from
    tvm_version: str
    ffi_version: str

    def path(self, name: str) -> Path:
        """`name` without suffix, e.g. 'libtvm_runtime' -> the file for this platform."""
        package = "tvm_ffi" if name == "libtvm_ffi" else "tvm"
        found = self.folder / package / "lib" / f"{name}{SUFFIX[self.os]}"
        if not found.is_file():
            raise ToolchainError(
                f"{found} is missing from the TVM {self.tvm_version} wheel for {self.os}-{self.arch} ({self.source})"
            )
        return found

    def licenses(self) -> dict[str, Path]:
        """License files of the two wheels, to ship beside the libraries (Apache-2.0 asks for them)."""
        found = {}
        for dist in (TVM_DIST, FFI_DIST):
            folder = self.folder / f"{dist.replace('-', '_')}-{self._version(dist)}.dist-info" / "licenses"
            for path in sorted(folder.glob("*")) if folder.is_dir() else []:
                found[f"{dist}-{path.name}"] = path
        return found

    def _version(self, dist: str) -> str:
        return self.tvm_version if dist == TVM_DIST else self.ffi_version


def installed_versions() -> tuple[str, str]:
    try:
        return importlib.metadata.version(TVM_DIST), importlib.metadata.version(FFI_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ToolchainError(f"the Python package {exc.name} is not installed; edgecc needs it") from None


def this_platform() -> tuple[str, str]:
    system = {"Linux": "linux", "Darwin": "macos"}.get(host_platform.system(), host_platform.system().lower())
    return system, host_platform.machine()


def runtime_libraries(os_name: str, arch: str, progress=None) -> RuntimeLibraries:
    tvm_version, ffi_version = installed_versions()
    if (os_name, arch) == this_platform():
        spec = importlib.util.find_spec("tvm")
        site = Path(spec.origin).resolve().parent.parent
        return RuntimeLibraries(os_name, arch, site, f"installed {TVM_DIST} {tvm_version}", tvm_version, ffi_version)
    if (os_name, arch) == ("linux", "aarch64"):
        board = _board_cache(tvm_version, ffi_version)
        if board is not None:
            return board
    return _downloaded(os_name, arch, tvm_version, ffi_version, progress)


def _board_cache(tvm_version: str, ffi_version: str) -> RuntimeLibraries | None:
    from edgecc.remote.board.setup import board_root

    site = board_root("aarch64").site
    wanted = [site / f"apache_tvm-{tvm_version}.dist-info", site / f"apache_tvm_ffi-{ffi_version}.dist-info"]
    if not all(path.is_dir() for path in wanted) or not (site / "tvm" / "lib").is_dir():
        return None
    return RuntimeLibraries(
        "linux",
        "aarch64",
        site,
        f"{TVM_DIST} {tvm_version} aarch64 wheel (emulated-board cache)",
        tvm_version,
        ffi_version,
    )


def _cache_root() -> Path:
    return Path(os.environ.get("EDGECC_CACHE") or Path.home() / ".cache" / "edgecc") / "runtime-libs"


def _downloaded(os_name: str, arch: str, tvm_version: str, ffi_version: str, progress) -> RuntimeLibraries:
    platforms = PIP_PLATFORMS.get((os_name, arch))
    if platforms is None:
        raise ToolchainError(
            f"no TVM wheel is published for {os_name}-{arch}; known: " + ", ".join(f"{o}-{a}" for o, a in PIP_PLATFORMS)
        )
    folder = _cache_root() / f"{os_name}-{arch}-tvm{tvm_version}-ffi{ffi_version}"
    source = f"{TVM_DIST} {tvm_version} and {FFI_DIST} {ffi_version} wheels for {os_name}-{arch} (pip download)"
    if not (folder / "ready").exists():
        if progress:
            progress(
                f"deploy: downloading the TVM {tvm_version} runtime for {os_name}-{arch} (once, cached in {folder})"
            )
        _download_and_unpack(folder, platforms, [f"{TVM_DIST}=={tvm_version}", f"{FFI_DIST}=={ffi_version}"])
    return RuntimeLibraries(os_name, arch, folder, source, tvm_version, ffi_version)


def _keep(member: str) -> bool:
    """Runtime libraries and license files only: not the compiler, the Python code or test libraries."""
    parts = member.split("/")
    if len(parts) == 3 and parts[0] in ("tvm", "tvm_ffi") and parts[1] == "lib":
        name = parts[2]
        return name.startswith(("libtvm_runtime", "libtvm_ffi.")) and not name.startswith("libtvm_ffi_testing")
    return ".dist-info/licenses/" in member and not member.endswith("/")


def _download_and_unpack(folder: Path, platforms: list[str], requirements: list[str]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".runtime-libs-", dir=folder.parent) as tmp:
        wheels, staged = Path(tmp) / "wheels", Path(tmp) / "staged"
        wheels.mkdir()
        download_wheels(
            wheels, platforms, requirements, f"the TVM runtime wheels ({' '.join(requirements)}) for {platforms[0]}"
        )
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if _keep(member):
                        archive.extract(member, staged)
        (staged / "ready").write_text("ok\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staged, folder)
