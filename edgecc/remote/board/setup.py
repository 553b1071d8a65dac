"""Build (once) the cached aarch64 sysroot and wheels the emulated board runs from.

Layout under $EDGECC_CACHE/board-aarch64 (default ~/.cache/edgecc/board-aarch64):
  root/   arm64 Debian packages unpacked with `dpkg -x` (python3.11 and the libraries it links)
  site/   aarch64 cp311 wheels unzipped (TVM runtime, numpy, ...), put on PYTHONPATH
  ready   written last, so an interrupted setup is redone rather than trusted
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgecc.errors import ToolchainError
from edgecc.platform_wheels import pip_download_command

ARM64_DEBS = [
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libexpat1",
    "zlib1g",
    "libffi8",
    "libssl3",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libuuid1",
    "libstdc++6",
    "libgcc-s1",
    "libgomp1",
    "libcrypt1",
    "libnsl2",
    "libtirpc3",
    "libdb5.3",
    "libgdbm6",
]
AARCH64_WHEELS = [
    "apache-tvm==0.27.0.post1",
    "apache-tvm-ffi==0.1.14.post0",
    "numpy",
    "ml_dtypes",
    "psutil",
    "cloudpickle",
    "tornado",
    "typing_extensions",
]
PLATFORMS = [
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_24_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
]
HOST_APT = ["qemu-user-static", "gcc-aarch64-linux-gnu", "g++-aarch64-linux-gnu"]
QEMU = "qemu-aarch64-static"


@dataclass(frozen=True)
class BoardPaths:
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def site(self) -> Path:
        return self.base / "site"

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / "python3.11"

    @property
    def ready_marker(self) -> Path:
        return self.base / "ready"

    @property
    def is_ready(self) -> bool:
        return self.ready_marker.exists() and self.python.exists() and (self.site / "tvm").is_dir()


def board_root(arch: str = "aarch64") -> BoardPaths:
    if arch != "aarch64":
        raise ToolchainError(f"no emulated board for arch '{arch}'; only aarch64 is supported")
    cache = Path(os.environ.get("EDGECC_CACHE") or Path.home() / ".cache" / "edgecc")
    return BoardPaths(cache / f"board-{arch}")


def _say(progress, line: str) -> None:
    if progress:
        progress(line)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
        raise ToolchainError(f"board setup failed while {what}: `{' '.join(cmd[:4])} ...` said: {tail[0]}")


def _apt_can_install() -> bool:
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def ensure_host_tools(progress=print) -> None:
    """qemu-aarch64-static and the aarch64 cross compiler, installed with apt when missing (root only)."""
    missing = [
        p
        for p, tool in zip(HOST_APT, [QEMU, "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++"])
        if shutil.which(tool) is None
    ]
    if not missing:
        return
    if not _apt_can_install():
        raise ToolchainError(
            f"the emulated board needs Debian packages {' '.join(missing)}; "
            f"run: sudo apt-get install {' '.join(missing)}"
        )
    _say(progress, f"board setup: apt-get install {' '.join(missing)}")
    _run(["apt-get", "update", "-q"], "updating apt")
    _run(["apt-get", "install", "-y", "-q", *missing], "installing host packages")


def _ensure_arm64_apt(progress) -> None:
    out = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    if "arm64" in out:
        return
    if not _apt_can_install():
        raise ToolchainError(
            "the emulated board needs arm64 packages: run as root `dpkg --add-architecture arm64 && apt-get update`"
        )
    _say(progress, "board setup: dpkg --add-architecture arm64 && apt-get update")
    _run(["dpkg", "--add-architecture", "arm64"], "adding the arm64 architecture")
    _run(["apt-get", "update", "-q"], "updating apt for arm64")


def _download_debs(into: Path, progress) -> None:
    _ensure_arm64_apt(progress)
    _say(progress, f"board setup: apt-get download {len(ARM64_DEBS)} arm64 packages")
    names = [f"{p}:arm64" for p in ARM64_DEBS]
    proc = subprocess.run(["apt-get", "download", *names], cwd=into, capture_output=True, text=True)
    if proc.returncode != 0:
        # A stale package list is the usual cause; refresh once and retry.
        if _apt_can_install():
            _run(["apt-get", "update", "-q"], "updating apt")
        _run(["apt-get", "download", *names], "downloading arm64 packages", cwd=into)


def _download_wheels(into: Path, progress) -> None:
    _say(progress, f"board setup: pip download {len(AARCH64_WHEELS)} aarch64 wheels")
    _run(pip_download_command(into, PLATFORMS) + AARCH64_WHEELS, "downloading aarch64 wheels")


def ensure_board(arch: str = "aarch64", progress=print, force: bool = False) -> BoardPaths:
    """Idempotent: returns at once when the cache is complete; otherwise builds it in a temp folder and swaps it in."""
    paths = board_root(arch)
    if paths.is_ready and not force:
        _say(progress, f"board setup: cached at {paths.base}")
        return paths
    ensure_host_tools(progress)
    paths.base.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.base.parent, prefix=".board-setup-") as tmp:
        tmp = Path(tmp)
        staged = BoardPaths(tmp / "staged")
        debs, wheels = tmp / "debs", tmp / "wheels"
        for d in (staged.root, staged.site, debs, wheels):
            d.mkdir(parents=True)
        _download_debs(debs, progress)
        _say(progress, "board setup: unpacking arm64 packages")
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(staged.root)], f"unpacking {deb.name}")
        _download_wheels(wheels, progress)
        _say(progress, "board setup: unpacking aarch64 wheels")
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(staged.site)
        if not staged.python.exists():
            raise ToolchainError(f"board setup produced no aarch64 python at {staged.python}")
        staged.ready_marker.write_text("ok\n")
        if paths.base.exists():
            shutil.rmtree(paths.base)
        os.replace(staged.base, paths.base)
    _say(progress, f"board setup: done, {paths.base}")
    return paths
