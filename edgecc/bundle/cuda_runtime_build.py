"""TVM's CUDA runtime module for CUDA 12 on aarch64, built here from TVM's source (no wheel ships one).

TVM's aarch64 wheel has libtvm_runtime_cuda.so for CUDA 13 only. For a JetPack 6 bundle edgecc
compiles the same three sources the wheel's module is made of (src/backend/cuda/runtime/*.cc,
src/runtime/vm/cuda/*.cc) with the aarch64 cross g++ against CUDA 12.9 headers (TVM 0.27 names a
CUDA 12.8 launch attribute), links them against the wheel's own aarch64 libtvm_runtime.so /
libtvm_ffi.so with --no-undefined (every symbol the module needs exists in the libraries it ships
beside), against libcudart.so.12 from NVIDIA's aarch64 runtime wheel, and against a stand-in
libcuda.so.1 made only for linking (never shipped: the board's driver provides the real one). Every
CUDA runtime function the module calls is then looked up in CUDA 12.2's libcudart (the oldest of
JetPack 6), so the bundle can say which JetPack 6 releases have them.

The source is the user's checkout of apache/tvm (`--tvm-source DIR`); nothing of it is stored in
edgecc. The installed TVM wheel's own headers (tvm/include, tvm/src/runtime: the exact release)
are laid over it, so the module's view of TVM's runtime types matches the wheel even when the
checkout is not the wheel's commit; the build record says which commit was used. The result is
cached in $EDGECC_CACHE/cuda-runtime/.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgecc.backends._nvrtc import distribution_version, package_folder
from edgecc.backends.cuda_toolkits import RUNTIME_BUILD_12
from edgecc.bundle.runtime_libs import PIP_PLATFORMS, installed_versions, runtime_libraries
from edgecc.errors import EdgeccError, ToolchainError
from edgecc.platform_wheels import download_wheels

CROSS_GXX = "aarch64-linux-gnu-g++"
SOURCES = ("src/backend/cuda/runtime/cuda_device_api.cc", "src/backend/cuda/runtime/cuda_module.cc")
SOURCE_GLOBS = ("src/runtime/vm/cuda/*.cc",)
COPIED = ("include", "src/backend/cuda/runtime", "src/runtime", "src/support")  # all the sources include
# What TVM's runtime looks up in the module (its wheel's module registers the same names).
REGISTERED = ("device_api.cuda", "device_api.cuda_host", "ffi.Module.load_from_bytes.cuda", "ffi.Module.create.cuda")
BUILD_RECORD = "build.json"


def _cache_root() -> Path:
    return Path(os.environ.get("EDGECC_CACHE") or Path.home() / ".cache" / "edgecc") / "cuda-runtime"


def cached_runtime_folder() -> Path:
    tvm_version, ffi_version = installed_versions()
    headers = RUNTIME_BUILD_12["wheels"][0].split("==")[1]
    return _cache_root() / f"linux-aarch64-tvm{tvm_version}-ffi{ffi_version}-cuda{headers}"


def wheel_commit() -> str:
    """The commit TVM's wheel was built from (setuptools_scm's 'g7b5acb32b' -> '7b5acb32b')."""
    import tvm

    return str(getattr(getattr(tvm, "_version", None), "commit_id", "") or "unknown").removeprefix("g")


def cuda12_runtime(tvm_source: Path | None, log=print) -> Path:
    """libtvm_runtime_cuda.so for CUDA 12 on aarch64: from the cache, or built from `tvm_source`."""
    folder = cached_runtime_folder()
    library = folder / "libtvm_runtime_cuda.so"
    if library.is_file() and (folder / BUILD_RECORD).is_file():
        return library
    if tvm_source is None:
        raise EdgeccError(
            "this artifact's device code is for CUDA 12 (JetPack 6), and TVM's aarch64 wheel has only a CUDA 13 "
            "runtime module: pass --tvm-source DIR (a checkout of apache/tvm, ideally at the wheel's commit "
            f"{wheel_commit()}) to build one once (cached), or --cuda-runtime FILE"
        )
    build_cuda12_runtime(Path(tvm_source), folder, log)
    return library


def build_record(library: Path) -> dict:
    try:
        return json.loads((library.parent / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _bare_git(source: Path) -> bool:
    """A clone without a work tree (git clone --bare, or a mirror): read through git itself."""
    return not (source / "src").is_dir() and (source / "HEAD").is_file() and (source / "objects").is_dir()


def _git(source: Path, *args: str, text: bool = True):
    where = ["--git-dir", str(source)] if _bare_git(source) else ["-C", str(source)]
    return subprocess.run(["git", *where, *args], capture_output=True, text=text)


def _check_source(source: Path) -> None:
    if _bare_git(source):
        found = _git(source, "cat-file", "-e", f"HEAD:{SOURCES[1]}").returncode == 0
    else:
        found = (source / SOURCES[1]).is_file()
    if not found:
        raise EdgeccError(
            f"--tvm-source {source} is not a TVM source tree (no {SOURCES[1]}); check out apache/tvm at the "
            f"wheel's commit {wheel_commit()} (or the closest v0.27 commit you have)"
        )


def _source_commit(source: Path) -> str:
    """HEAD of a bare clone, or of a checkout when `source` is the top of its git work tree."""
    if not _bare_git(source):
        top = _git(source, "rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != source.resolve():
            return "unknown"
    head = _git(source, "rev-parse", "HEAD")
    return head.stdout.strip() if head.returncode == 0 else "unknown"


def _staged_source(source: Path, stage: Path) -> tuple[list[Path], int]:
    """The sources' subtrees copied (or archived from a bare clone's HEAD), then the installed wheel's release
    headers laid over them; returns the .cc files to compile and how many headers were laid."""
    stage.mkdir(parents=True)
    if _bare_git(source):
        archive = _git(source, "archive", "HEAD", *COPIED, text=False)
        if archive.returncode != 0:
            raise ToolchainError(f"git archive of {source} failed: {archive.stderr.decode(errors='replace')[:300]}")
        subprocess.run(["tar", "-x", "-C", str(stage)], input=archive.stdout, check=True)
    else:
        for part in COPIED:
            if (source / part).is_dir():
                shutil.copytree(source / part, stage / part, dirs_exist_ok=True)
    wheel = Path(importlib.util.find_spec("tvm").origin).parent
    laid = 0
    for part in ("include", "src/runtime"):
        for path in sorted((wheel / part).rglob("*.h")):
            relative = path.relative_to(wheel)
            (stage / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, stage / relative)
            laid += 1
    sources = [stage / s for s in SOURCES]
    for pattern in SOURCE_GLOBS:
        sources += sorted(stage.glob(pattern))
    return sources, laid


def cuda12_aarch64(log=print) -> Path:
    """CUDA 12 headers (include/) and libcudart.so.12 (lib/) from NVIDIA's aarch64 wheels: pip download once, cached.

    Used to compile and link the runtime module (and, in tests, as the board's libcudart under QEMU); not shipped.
    """
    wheels = RUNTIME_BUILD_12["wheels"]
    folder = _cache_root() / f"cuda-aarch64-{wheels[0].split('==')[1]}"
    if (folder / "ready").is_file():
        return folder
    log(f"deploy: downloading {' and '.join(wheels)} for aarch64 (once, cached in {folder})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cuda-", dir=folder.parent) as tmp:
        download_wheels(Path(tmp), PIP_PLATFORMS[("linux", "aarch64")], list(wheels), f"{' '.join(wheels)} for aarch64")
        staged = Path(tmp) / "staged"
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    # nvidia/cuda_runtime/include/..., nvidia/cuda_nvcc/include/crt/..., .../lib/libcudart.so.12
                    parts = member.split("/")
                    if len(parts) > 3 and parts[2] == "include" and not member.endswith("/"):
                        target = staged / "include" / "/".join(parts[3:])
                    elif member.endswith("/lib/libcudart.so.12"):
                        target = staged / "lib" / "libcudart.so.12"
                    else:
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
        if not (staged / "lib" / "libcudart.so.12").is_file() or not (staged / "include" / "crt").is_dir():
            raise ToolchainError(f"{' and '.join(wheels)} did not hold libcudart.so.12 and the crt/ headers")
        (staged / "ready").write_text("ok\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staged, folder)
    return folder


def _header_release(include: Path) -> str:
    found = re.search(r"#define\s+CUDART_VERSION\s+(\d+)", (include / "cuda_runtime_api.h").read_text(errors="replace"))
    version = int(found.group(1)) if found else 0
    return f"{version // 1000}.{(version % 1000) // 10}"


def _dynamic_symbols(nm: str, library: Path, undefined: bool) -> set[str]:
    flag = "--undefined-only" if undefined else "--defined-only"
    listed = subprocess.run([nm, "-D", flag, str(library)], capture_output=True, text=True, check=True).stdout
    return {ln.split()[-1].split("@")[0] for ln in listed.splitlines() if ln.strip()}


def oldest_cudart_check(module: Path, nm: str) -> dict:
    """Does CUDA 12.2's libcudart (the oldest JetPack 6 has) define every cuda* function the module calls?"""
    requirement, release = RUNTIME_BUILD_12["oldest_board_cudart"]
    try:
        folder = package_folder("nvidia.cuda_runtime", requirement, "checking the CUDA 12 runtime module")
    except ToolchainError as exc:
        return {"checked": False, "why": str(exc)}
    oldest = folder / "lib" / "libcudart.so.12"
    if distribution_version(requirement) != requirement.split("==")[1] or not oldest.is_file():
        return {"checked": False, "why": f"{requirement} is not the installed version"}
    needed = {n for n in _dynamic_symbols(nm, module, undefined=True) if n.startswith("cuda")}
    missing = sorted(needed - _dynamic_symbols("nm", oldest, undefined=False))
    return {"checked": True, "release": release, "functions": len(needed), "missing": missing}


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace")  # g++ quotes with ‘’
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.strip().splitlines() or ["?"]
        raise ToolchainError(f"{what} failed: {lines[0][:400]}")


def _driver_stub(objects: list[Path], nm: str, folder: Path, gxx: str) -> Path:
    """A libcuda.so.1 exporting the driver functions the objects call, each answering 'no device': for linking only."""
    listed = subprocess.run([nm, "-u", *map(str, objects)], capture_output=True, text=True, check=True).stdout
    names = sorted({ln.split()[-1] for ln in listed.splitlines() if re.fullmatch(r"\s*U cu[A-Z]\w*", ln)})
    source = folder / "libcuda_link_stub.c"
    source.write_text("".join(f"int {name}(void) {{ return 100; }}\n" for name in names))
    library = folder / "libcuda.so.1"
    _run(
        [gxx.replace("g++", "gcc"), "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(library), str(source)],
        "the link-only libcuda stub",
    )
    return library


def build_cuda12_runtime(source: Path, folder: Path, log=print) -> Path:
    gxx = shutil.which(CROSS_GXX)
    if gxx is None:
        raise ToolchainError(f"{CROSS_GXX} is not installed; install it with `apt-get install g++-aarch64-linux-gnu`")
    _check_source(source)
    cuda = cuda12_aarch64(log)
    headers, cudart, cuda_release = (
        [cuda / "include"],
        cuda / "lib" / "libcudart.so.12",
        _header_release(cuda / "include"),
    )
    libs = runtime_libraries("linux", "aarch64", progress=log)
    import tvm_ffi

    ffi_include = Path(tvm_ffi.__file__).parent / "include"
    log(f"deploy: building TVM's CUDA {cuda_release} runtime module for aarch64 from {source} (once, ~30 s)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cuda-runtime-", dir=folder.parent) as tmp:
        stage, out = Path(tmp) / "tvm", Path(tmp) / "out"
        out.mkdir()
        staged, laid = _staged_source(source, stage)
        flags = ["-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-DNDEBUG", "-DTVM_RUNTIME_EXPORTS"]
        flags += ["-DTVM_FFI_EXPORTS", f"-I{stage / 'include'}", f"-I{ffi_include}", *(f"-I{h}" for h in headers)]
        objects = [out / f"{s.stem}.o" for s in staged]
        with ThreadPoolExecutor(max_workers=2) as pool:  # the machine's two cores
            jobs = [
                pool.submit(_run, [gxx, *flags, "-c", str(s), "-o", str(o)], f"compiling {s.name}")
                for s, o in zip(staged, objects, strict=True)
            ]
            for job in jobs:
                job.result()
        stub = _driver_stub(objects, gxx.replace("g++", "nm"), out, gxx)
        library = out / "libtvm_runtime_cuda.so"
        _run(
            [
                gxx,
                "-shared",
                "-o",
                str(library),
                *map(str, objects),
                "-Wl,-soname,libtvm_runtime_cuda.so",
                "-Wl,-rpath,$ORIGIN",
                "-Wl,--no-undefined",
                "-Wl,--as-needed",
                str(libs.path("libtvm_runtime")),
                str(libs.path("libtvm_ffi")),
                str(cudart),
                str(stub),
            ],
            "linking libtvm_runtime_cuda.so against the wheel's aarch64 libtvm_runtime and libtvm_ffi",
        )
        data = library.read_bytes()
        missing = [name for name in REGISTERED if name.encode() + b"\0" not in data]
        if missing:
            raise ToolchainError(f"the built CUDA runtime module does not register {', '.join(missing)}")
        record = {
            "cuda_release": cuda_release,
            "cuda_wheels": list(RUNTIME_BUILD_12["wheels"]),
            "oldest_cudart": oldest_cudart_check(library, gxx.replace("g++", "nm")),
            "driver_functions": sorted(
                n
                for n in _dynamic_symbols(gxx.replace("g++", "nm"), library, undefined=True)
                if re.match(r"cu[A-Z]", n)
            ),
            "tvm_version": libs.tvm_version,
            "tvm_source": str(source),
            "tvm_source_commit": _source_commit(source),
            "wheel_commit": wheel_commit(),
            "wheel_headers_laid_over": laid,
            "compiler": subprocess.run([gxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        }
        final = Path(tmp) / "final"  # only the module and its record are kept (no objects, no driver stub)
        final.mkdir()
        shutil.copy2(library, final / library.name)
        (final / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(final, folder)
    if not record["tvm_source_commit"].startswith(record["wheel_commit"]):
        log(
            f"deploy: note: {source} is at commit {record['tvm_source_commit'][:12]}, not (or not known to be) the "
            f"wheel's {record['wheel_commit']}; the wheel's runtime headers were laid over it, and the module links "
            "against the wheel's libraries with no undefined symbols (see README)"
        )
    return folder / "libtvm_runtime_cuda.so"
