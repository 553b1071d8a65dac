"""`edgecc deploy`: turn an artifact folder into a bundle a board runs with nothing else installed.

bundle/
  model.so (model.dylib, ...)   the compiled model, copied from the artifact
  model.json                    what the C API reads: tensors, valid id ranges, threads, device needs
  lib/                          TVM runtime libraries for the board (+ libedgecc_model, the C API)
  include/edgecc_model.h        the C API
  bin/edgecc-run                example program, built with the target's toolchain
  src/                          the C API and example sources, CMakeLists.txt, tvm-ffi headers
  licenses/                     TVM's and tvm-ffi's licenses (they ship inside lib/)
  README.md                     exact steps, threads, sizes, the board's minimum requirements
Written in a staged folder renamed into place: a failed deploy leaves nothing behind, and an
existing folder is only replaced when it is an earlier bundle.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgecc.artifact.loader import MANIFEST, read_manifest
from edgecc.artifact.manifest import sha256
from edgecc.atomic import staged_directory, write_json_atomic, write_text_atomic
from edgecc.bundle.build import build_c_api_and_example
from edgecc.bundle.cuda import cuda_needs
from edgecc.bundle.description import BUNDLE_FORMAT, MODEL_JSON, inputs_with_ranges, model_description
from edgecc.bundle.elf_needs import minimum_versions, read_elf_needs, system_libraries
from edgecc.bundle.kinds import deploy_kind
from edgecc.bundle.runtime_libs import SUFFIX, installed_versions, runtime_libraries
from edgecc.errors import EdgeccError
from edgecc.threads import check_thread_count, logical_cpus

SOURCES = Path(__file__).with_name("runtime_src")
C_SOURCES = ["edgecc_model.cc", "edgecc_run.c", "npy.c", "npy.h", "CMakeLists.txt"]
NOT_DEPLOYED = {MANIFEST, "report.json", "report.md", "report.html"}  # the artifact's own bookkeeping


@dataclass
class DeployResult:
    bundle: Path
    target: str
    kind: str
    device: str
    threads: int
    files: dict[str, int]  # path in the bundle -> bytes
    runtime_libraries: dict[str, int]  # lib/ file -> bytes (TVM runtime and the C API)
    requirements: dict = field(default_factory=dict)  # GLIBC/GLIBCXX minimums, system libraries, CUDA
    prebuilt: bool = True  # bin/edgecc-run was built here
    source: str = ""  # where the runtime libraries came from

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def _bundle_threads(threads, target: dict) -> int:
    """The threads model.json gives the C API: the board's cores unless the user says (a host
    target's board is this machine, so its logical CPUs count too)."""
    cores = int(target.get("board", {}).get("cores") or 1)
    if threads is None:
        return cores
    if target.get("name") == "host":
        return check_thread_count(threads, max(cores, logical_cpus()), "this machine (target 'host')")
    return check_thread_count(threads, cores, f"target '{target.get('name')}'")


def deploy(
    artifact, output, *, threads: int | None = None, cuda_runtime=None, tvm_source=None, log=print
) -> DeployResult:
    """`cuda_runtime`: a libtvm_runtime_cuda.so to ship; `tvm_source`: a TVM checkout to build the CUDA 12 one from."""
    artifact, output = Path(artifact), Path(output)
    manifest = read_manifest(artifact)
    target = manifest["target"]
    threads = _bundle_threads(threads, target)
    kind = deploy_kind(target["kind"])
    _check_library(artifact, manifest)
    _check_tvm_version(manifest)
    _check_output(output, artifact)
    if cuda_runtime is not None and not kind.needs_cuda:
        raise EdgeccError(f"--cuda-runtime applies to CUDA targets; {target['name']} is a {kind.kind} target")
    cuda_runtime, runtime_record = _cuda_runtime(manifest, kind, cuda_runtime, tvm_source, log)
    inputs = inputs_with_ranges(manifest, artifact, log)
    with staged_directory(output) as stage:
        for name in _model_files(artifact, manifest):
            shutil.copy2(artifact / name, stage / name)
        libs, shipped, cuda = None, [], None
        if kind.libraries:
            libs = runtime_libraries(target["os"], target["arch"], progress=log)
            shipped = _copy_runtime(libs, kind, stage, cuda_runtime)
        if kind.needs_cuda:
            cuda = cuda_needs(manifest, stage / "lib" / f"libtvm_runtime_cuda{SUFFIX[target['os']]}", runtime_record)
        device_runtime = [f"lib/{name}{SUFFIX[target['os']]}" for name in kind.device_runtime]
        write_json_atomic(
            stage / MODEL_JSON,
            model_description(
                manifest, inputs, kind.device, threads, device_runtime, cuda.to_model_json() if cuda else None
            ),
        )
        if kind.has_c_api:
            _copy_sources(stage)
        built = None
        if kind.builds_here:
            built = build_c_api_and_example(
                kind.compiler(target),
                stage,
                stage / "src" / "third_party" / "tvm-ffi" / "include",
                [n.removeprefix("lib") for n in reversed(kind.libraries)],
            )
        requirements = _requirements(stage, manifest, shipped, cuda, runtime_record)
        result = DeployResult(
            output,
            target["name"],
            kind.kind,
            kind.device,
            threads,
            {},
            {},
            requirements,
            built is not None,
            libs.source if libs else "",
        )
        from edgecc.bundle.readme import bundle_readme

        result.files = _file_sizes(stage)
        result.runtime_libraries = {k: v for k, v in result.files.items() if k.startswith("lib/")}
        write_text_atomic(stage / "README.md", bundle_readme(result, manifest, kind, inputs, cuda, built))
        result.files = _file_sizes(stage)
    log(
        f"deploy: wrote {output} ({result.total_bytes / 1e6:.1f} MB; runtime libraries "
        f"{sum(result.runtime_libraries.values()) / 1e6:.1f} MB)"
    )
    return result


def _file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_library(artifact: Path, manifest: dict) -> None:
    library = artifact / manifest["library"]
    if not library.is_file():
        raise EdgeccError(f"{library} is missing; the artifact is incomplete (compile it again)")
    recorded = manifest.get("files", {}).get(manifest["library"], {}).get("sha256")
    if recorded and sha256(library) != recorded:
        raise EdgeccError(
            f"{library} does not match the SHA-256 in {artifact / MANIFEST}: the file was changed "
            "or damaged after the compile; compile it again"
        )


def _check_tvm_version(manifest: dict) -> None:
    compiled_with = manifest.get("versions", {}).get("tvm")
    installed, _ = installed_versions()
    if compiled_with and compiled_with != installed:
        raise EdgeccError(
            f"the artifact was compiled with TVM {compiled_with}, but this edgecc ships the TVM "
            f"{installed} runtime; the library and runtime must match: compile it again here"
        )


def _check_output(output: Path, artifact: Path) -> None:
    if output.resolve() == artifact.resolve():
        raise EdgeccError(f"the bundle cannot be written over the artifact {artifact}; pick another -o folder")
    if not output.exists():
        return
    if not output.is_dir():
        raise EdgeccError(f"cannot write the bundle to {output}: a file of that name exists")
    if not any(output.iterdir()):
        return
    try:
        earlier = json.loads((output / MODEL_JSON).read_text()).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        earlier = False
    if not earlier:
        raise EdgeccError(
            f"{output} exists and is not an edgecc bundle; not replacing it (remove it or pick another -o folder)"
        )


def _model_files(artifact: Path, manifest: dict) -> list[str]:
    """The library and what the backend packaged with it (Metal objects and shader source), not the reports."""
    reference = manifest.get("reference_model", "reference.onnx")
    names = [n for n in manifest.get("files", {}) if n not in NOT_DEPLOYED and n != reference]
    return sorted(set(names) | {manifest["library"]})


def _copy_runtime(libs, kind, stage: Path, cuda_runtime) -> list[str]:
    lib = stage / "lib"
    lib.mkdir()
    shipped = []
    for name in (*kind.libraries, *kind.device_runtime):
        source = libs.path(name)
        if cuda_runtime is not None and name == "libtvm_runtime_cuda":
            source = Path(cuda_runtime)
            if not source.is_file():
                raise EdgeccError(f"--cuda-runtime {source} does not exist")
        shutil.copy2(source, lib / f"{name}{SUFFIX[libs.os]}")
        (lib / f"{name}{SUFFIX[libs.os]}").chmod(0o755)  # wheels unzip libraries without exec bits
        shipped.append(f"{name}{SUFFIX[libs.os]}")
    licenses = stage / "licenses"
    licenses.mkdir()
    for name, path in libs.licenses().items():
        shutil.copy2(path, licenses / name)
    return shipped


def _cuda_runtime(manifest: dict, kind, cuda_runtime, tvm_source, log) -> tuple[Path | None, dict | None]:
    """The libtvm_runtime_cuda.so to ship (None: the wheel's) and, for one edgecc built, its build record."""
    from edgecc.bundle.cuda_runtime_build import build_record, cuda12_runtime

    built_here = manifest.get("contents", {}).get("cuda_runtime_module") == "build"  # compiled with --cuda 12
    if tvm_source is not None and not (kind.needs_cuda and built_here):
        raise EdgeccError(
            "--tvm-source builds TVM's CUDA 12 runtime module, for artifacts compiled with `--cuda 12`; "
            f"{manifest['target']['name']}'s artifact does not need it"
        )
    if cuda_runtime is not None and tvm_source is not None:
        raise EdgeccError("pass --cuda-runtime FILE (a module you built) or --tvm-source DIR (edgecc builds one)")
    if cuda_runtime is not None:
        path = Path(cuda_runtime)
        return path, build_record(path) if path.is_file() else None
    if built_here:
        path = cuda12_runtime(Path(tvm_source) if tvm_source is not None else None, log)
        return path, build_record(path)
    return None, None


def _copy_sources(stage: Path) -> None:
    (stage / "include").mkdir()
    shutil.copy2(SOURCES / "edgecc_model.h", stage / "include" / "edgecc_model.h")
    src = stage / "src"
    src.mkdir()
    for name in C_SOURCES:
        shutil.copy2(SOURCES / name, src / name)
    # tvm-ffi's C++ headers (Apache-2.0, from the installed tvm_ffi package), to rebuild the C API
    ffi_include = Path(importlib.util.find_spec("tvm_ffi").origin).parent / "include"
    shutil.copytree(
        ffi_include, src / "third_party" / "tvm-ffi" / "include", ignore=shutil.ignore_patterns("tvm_ffi_python_*")
    )


def _requirements(stage: Path, manifest: dict, shipped: list[str], cuda, runtime_record=None) -> dict:
    elf_files = [
        p
        for p in sorted(stage.rglob("*"))
        if p.is_file() and p.suffix not in (".h", ".c", ".cc", ".txt", ".json", ".md")
    ]
    needs = [n for n in (read_elf_needs(p) for p in elf_files) if n.needed or n.versions]
    own = set(shipped) | {"libedgecc_model.so"}
    found = {
        "os": manifest["target"]["os"],
        "arch": manifest["target"]["arch"],
        "minimum_versions": minimum_versions(needs),
        "system_libraries": system_libraries(needs, own),
    }
    if cuda is not None:
        found["cuda"] = {**cuda.to_model_json(), "jetpack": cuda.jetpack}
        if runtime_record:
            found["cuda"]["runtime_build"] = runtime_record
    return found
