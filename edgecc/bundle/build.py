"""Build the C API library and the example program for the board, inside the staged bundle.

Same flags as the bundle's CMake project (src/CMakeLists.txt), so a rebuild on the board gives the
same binaries: the C API links the TVM runtime with $ORIGIN as its rpath, edgecc-run links the C
API with $ORIGIN/../lib, and nothing outside the bundle is needed but libc and libstdc++.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgecc.errors import ToolchainError

C_API_LIBRARY = "libedgecc_model.so"
EXAMPLE = "edgecc-run"
C_API_SOURCES = ["edgecc_model.cc"]
EXAMPLE_SOURCES = ["edgecc_run.c", "npy.c"]


@dataclass(frozen=True)
class BuiltProgram:
    c_api: Path
    example: Path
    compiler: str
    compiler_version: str


def compiler_version(compiler: str) -> str:
    proc = subprocess.run([compiler, "--version"], capture_output=True, text=True)
    return (proc.stdout.splitlines() or ["unknown"])[0]


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.strip().splitlines()
        raise ToolchainError(f"{Path(cmd[0]).name} failed to build {what}: {(lines or ['no output'])[0].strip()}")


def build_c_api_and_example(compiler: str, bundle: Path, ffi_include: Path, libraries: list[str]) -> BuiltProgram:
    """`libraries`: the TVM runtime libraries in bundle/lib to link, e.g. ['tvm_ffi', 'tvm_runtime'].

    Cached by everything that goes into the binaries (sources, headers, compiler, linked libraries),
    so deploying a second model for the same board does not compile again.
    """
    lib, bin_dir = bundle / "lib", bundle / "bin"
    bin_dir.mkdir(exist_ok=True)
    c_api, example = lib / C_API_LIBRARY, bin_dir / EXAMPLE
    version = compiler_version(compiler)
    cached = _cache_dir(compiler, version, bundle, ffi_include, libraries)
    if not (cached / "ready").exists():
        with tempfile.TemporaryDirectory(prefix=".build-", dir=_ensure(cached.parent)) as tmp:
            staged = Path(tmp) / "out"
            staged.mkdir()
            _compile(compiler, bundle, ffi_include, libraries, staged / C_API_LIBRARY, staged / EXAMPLE)
            (staged / "ready").write_text(version + "\n")
            try:
                os.replace(staged, cached)
            except OSError:  # another deploy cached the same build first
                pass
    shutil.copy2(cached / C_API_LIBRARY, c_api)
    shutil.copy2(cached / EXAMPLE, example)
    return BuiltProgram(c_api, example, compiler, version)


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cache_dir(compiler: str, version: str, bundle: Path, ffi_include: Path, libraries: list[str]) -> Path:
    digest = hashlib.sha256(f"{compiler}\0{version}\0{' '.join(libraries)}".encode())
    inputs = [bundle / "src" / n for n in (*C_API_SOURCES, *EXAMPLE_SOURCES, "npy.h")]
    inputs += [bundle / "include" / "edgecc_model.h", *sorted(ffi_include.rglob("*.h"))]
    inputs += [bundle / "lib" / f"lib{name}.so" for name in libraries]
    for path in inputs:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    root = Path(os.environ.get("EDGECC_CACHE") or Path.home() / ".cache" / "edgecc")
    return root / "deploy-builds" / digest.hexdigest()[:24]


def _compile(compiler: str, bundle: Path, ffi_include: Path, libraries: list[str], c_api: Path, example: Path):
    src, lib, include = bundle / "src", bundle / "lib", bundle / "include"
    _run(
        [
            compiler,
            "-std=c++17",
            "-O2",
            "-fPIC",
            "-shared",
            "-fvisibility=hidden",
            "-s",
            f"-I{include}",
            f"-I{ffi_include}",
            *[str(src / s) for s in C_API_SOURCES],
            f"-L{lib}",
            "-Wl,--no-as-needed",
            *[f"-l{name}" for name in libraries],
            "-Wl,--as-needed",
            "-ldl",
            "-Wl,-rpath,$ORIGIN",
            f"-Wl,-soname,{C_API_LIBRARY}",
            "-o",
            str(c_api),
        ],
        "the C API (libedgecc_model.so)",
    )
    # The example is C, compiled as C by the same driver (one file per call: g++ applies `-x c` to
    # only the first of several files), so one toolchain per target is enough.
    with tempfile.TemporaryDirectory(prefix="edgecc-run-build-") as tmp:
        objects = []
        for name in EXAMPLE_SOURCES:
            objects.append(str(Path(tmp) / f"{name}.o"))
            _run(
                [
                    compiler,
                    "-x",
                    "c",
                    "-std=c11",
                    "-O2",
                    "-Wall",
                    f"-I{include}",
                    f"-I{src}",
                    "-c",
                    str(src / name),
                    "-o",
                    objects[-1],
                ],
                f"the example edgecc-run ({name})",
            )
        _run(
            [
                compiler,
                "-s",
                *objects,
                "-Wl,--as-needed",
                f"-L{c_api.parent}",
                "-ledgecc_model",
                f"-Wl,-rpath-link,{lib}",
                "-Wl,-rpath,$ORIGIN/../lib",
                "-o",
                str(example),
            ],
            "the example edgecc-run",
        )
