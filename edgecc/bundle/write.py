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
Written in a staged folder renamed into place: a failed deploy leaves nothing behind. model.json's
"files" records every file the deploy wrote (path -> bytes, SHA-256); an existing folder is only
replaced when it is an earlier bundle holding exactly those files, unchanged: bin/edgecc-run writes
its outputs into the current folder by default, so users keep files in their bundle, and a deploy
never deletes what it did not write. The artifact's files are copied only after the checks `edgecc
run` applies (edgecc/artifact/integrity.py: inside the artifact, the size and SHA-256 its manifest
recorded, a whole ELF library).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgecc.artifact.integrity import check_whole_elf, read_artifact_json, sha256
from edgecc.artifact.loader import MANIFEST, checked_file, read_manifest
from edgecc.artifact.output import check_output_location, refuse_paths_inside, require_swappable
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
    _check_output(output, artifact, [("--cuda-runtime", cuda_runtime), ("--tvm-source", tvm_source)])
    threads = _bundle_threads(threads, target)
    kind = deploy_kind(target["kind"])
    model_files = _checked_model_files(artifact, manifest)
    _check_tvm_version(manifest)
    if cuda_runtime is not None and not kind.needs_cuda:
        raise EdgeccError(f"--cuda-runtime applies to CUDA targets; {target['name']} is a {kind.kind} target")
    cuda_runtime, runtime_record = _cuda_runtime(manifest, kind, cuda_runtime, tvm_source, log)
    inputs = inputs_with_ranges(manifest, artifact, log)
    with staged_directory(output) as stage:
        for name, source in model_files.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, stage / name)
        libs, shipped, cuda = None, [], None
        if kind.libraries:
            libs = runtime_libraries(target["os"], target["arch"], progress=log)
            shipped = _copy_runtime(libs, kind, stage, cuda_runtime)
        if kind.needs_cuda:
            cuda = cuda_needs(manifest, stage / "lib" / f"libtvm_runtime_cuda{SUFFIX[target['os']]}", runtime_record)
        device_runtime = [f"lib/{name}{SUFFIX[target['os']]}" for name in kind.device_runtime]
        description = model_description(
            manifest, inputs, kind.device, threads, device_runtime, cuda.to_model_json() if cuda else None
        )
        write_json_atomic(stage / MODEL_JSON, description)
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
        write_json_atomic(stage / MODEL_JSON, {**description, "files": bundle_file_table(stage)})
        result.files = _file_sizes(stage)
    log(
        f"deploy: wrote {output} ({result.total_bytes / 1e6:.1f} MB; runtime libraries "
        f"{sum(result.runtime_libraries.values()) / 1e6:.1f} MB)"
    )
    return result


def _file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def bundle_file_table(folder: Path) -> dict[str, dict]:
    """Every file of the bundle but model.json (which holds this table): path -> bytes and SHA-256."""
    return {
        path: {"bytes": size, "sha256": sha256(Path(folder) / path)}
        for path, size in _file_sizes(folder).items()
        if path != MODEL_JSON
    }


def _checked_model_files(artifact: Path, manifest: dict) -> dict[str, Path]:
    """The library and what the backend packaged with it (Metal objects and shader source), not the
    reports: each inside the artifact and the very file its compile wrote; the library a whole ELF."""
    reference = manifest.get("reference_model", "reference.onnx")
    names = {n for n in manifest.get("files") or {} if n not in NOT_DEPLOYED and n != reference}
    files = {}
    for name in sorted(names | {manifest["library"]}):
        files[name] = checked_file(artifact, manifest, name, "library" if name == manifest["library"] else "file")
    check_whole_elf(files[manifest["library"]])
    return files


def _check_tvm_version(manifest: dict) -> None:
    compiled_with = (manifest.get("versions") or {}).get("tvm")
    installed, _ = installed_versions()
    if compiled_with and compiled_with != installed:
        raise EdgeccError(
            f"the artifact was compiled with TVM {compiled_with}, but this edgecc ships the TVM "
            f"{installed} runtime; the library and runtime must match: compile it again here"
        )


def _check_output(output: Path, artifact: Path, named) -> None:
    """Before any work: the bundle folder is new, empty or an earlier bundle of only edgecc's files."""
    text = check_output_location(output, "bundle folder")
    final, source = output.resolve(), artifact.resolve()
    if final == source:
        raise EdgeccError(f"the bundle cannot be written over the artifact {artifact}; pick another -o folder")
    if final in source.parents:
        raise EdgeccError(f"the bundle folder {text} holds the artifact {artifact}; pick another -o folder")
    refuse_paths_inside(output, named, "bundle folder")
    if output.is_dir() and any(output.iterdir()):
        _require_earlier_bundle(output, text)
    require_swappable(output, "bundle folder")


def _require_earlier_bundle(output: Path, text: str) -> None:
    try:
        description = read_artifact_json(output / MODEL_JSON)
    except EdgeccError:
        description = None
    if not isinstance(description, dict) or description.get("format") != BUNDLE_FORMAT:
        raise EdgeccError(
            f"{output} exists and is not an edgecc bundle; not replacing it (remove it or pick another -o folder)"
        )
    recorded = description.get("files")
    if not isinstance(recorded, dict):
        raise EdgeccError(
            f"the bundle folder {text} is an edgecc bundle that does not list its own files (an older "
            "edgecc wrote it), so your files in it cannot be told from edgecc's; not replacing it: "
            "remove it yourself or pick another -o folder"
        )
    foreign, changed = _not_written_by_the_deploy(output, recorded)
    if foreign:
        raise EdgeccError(
            f"the bundle folder {text} also holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}, "
            "which edgecc did not write; not replacing it (move those out or pick another -o folder)"
        )
    if changed:
        raise EdgeccError(
            f"the bundle folder {text} holds {', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}, "
            f"changed since edgecc wrote {'it' if len(changed) == 1 else 'them'}; not replacing it (move "
            f"{'it' if len(changed) == 1 else 'those'} out or pick another -o folder)"
        )


def _not_written_by_the_deploy(folder: Path, recorded: dict) -> tuple[list[str], list[str]]:
    """(paths the deploy did not write, paths it wrote that were changed since), as the folder holds them."""
    own_folders = {str(parent) for name in recorded for parent in Path(name).parents if str(parent) != "."}
    foreign, changed = [], []
    for root, folders, files in os.walk(folder):
        relative = Path(root).relative_to(folder)
        for name in sorted(folders):
            path = relative / name
            if str(path) not in own_folders or (Path(root) / name).is_symlink():
                foreign.append(f"{path}/")
        folders[:] = [n for n in folders if f"{relative / n}/" not in foreign]
        for name in sorted(files):
            path, full = str(relative / name), Path(root) / name
            if path == MODEL_JSON:
                continue
            entry = recorded.get(path)
            if not isinstance(entry, dict) or full.is_symlink() or not full.is_file():
                foreign.append(path)
            elif entry.get("bytes") != full.stat().st_size or entry.get("sha256") != sha256(full):
                changed.append(path)
    return foreign, changed


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

    built_here = (manifest.get("contents") or {}).get("cuda_runtime_module") == "build"  # compiled with --cuda 12
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
