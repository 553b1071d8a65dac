"""Apple Metal: Metal shader source embedded in an arm64 macOS dylib, linked here with LLVM's ld64.lld.

No macOS SDK exists on Linux, so the dylib is linked without libSystem and with
`-undefined dynamic_lookup`: libc and TVM runtime symbols are found at dlopen time in the process
that loads it (a Python with the TVM runtime). The objects and a one-line Mac link command ship
alongside, in case a Mac-side relink is preferred.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edgecc.backends import Backend, Built, PackagedLibrary, build_relax, register
from edgecc.backends._elf import macho_arch
from edgecc.errors import ToolchainError
from edgecc.schedules.gpu import apply_gpu_default_schedules

LIBRARY_NAME = "model.dylib"
HOST_OBJECT = "model_host.o"
IMPORTS_OBJECT = "model_kernels.o"  # the packed device modules (Metal source + kernel table)
SHADER_SOURCE = "kernels.metal"
MIN_MACOS = "12.0"
MAC_LINK_COMMAND = (
    f"clang -dynamiclib -arch arm64 -mmacosx-version-min={MIN_MACOS} -undefined dynamic_lookup "
    f"-o {LIBRARY_NAME} {HOST_OBJECT} {IMPORTS_OBJECT}"
)


def package(built: Built, target, folder: Path) -> PackagedLibrary:
    executable = built.executable
    folder = Path(folder)
    linker = target.toolchain.require()
    objects: list[str] = []

    def keep_objects_and_link(output, inputs, options=None, **_):
        # TVM hands over the host object and the object holding the packed device modules.
        for source, name in zip(sorted(inputs, key=_imports_last), (HOST_OBJECT, IMPORTS_OBJECT)):
            shutil.copyfile(source, folder / name)
            objects.append(name)
        _link(linker, folder, output)

    keep_objects_and_link.output_format = "dylib"
    executable.export_library(str(folder / LIBRARY_NAME), fcompile=keep_objects_and_link)
    (folder / SHADER_SOURCE).write_text(_shader_source(executable))
    library = folder / LIBRARY_NAME
    return PackagedLibrary(
        library=LIBRARY_NAME,
        files=[LIBRARY_NAME, *objects, SHADER_SOURCE],
        contents={
            "format": "Mach-O dylib (ad-hoc signed), linked without the macOS SDK",
            "arch": macho_arch(library),
            "objects": {name: f"Mach-O {macho_arch(folder / name)} object" for name in objects},
            "weights": "embedded as constants",
            "device_code": f"Metal shader source, compiled by the Metal runtime at load ({SHADER_SOURCE} is a copy)",
            "not_tested": "never loaded on a Mac from here: no macOS machine is available",
        },
        load=(
            "On an Apple-silicon Mac with a TVM 0.27 runtime built with Metal: "
            f"lib = tvm.runtime.load_module('{LIBRARY_NAME}'); vm = tvm.relax.VirtualMachine(lib, tvm.metal()). "
            f"If macOS refuses the dylib, relink it on the Mac: {MAC_LINK_COMMAND}"
        ),
    )


def _imports_last(path: str) -> int:
    return 1 if Path(path).name.startswith("devc") else 0


def _link(linker: str, folder: Path, output: str) -> None:
    cmd = [
        linker,
        "-arch",
        "arm64",
        "-platform_version",
        "macos",
        MIN_MACOS,
        MIN_MACOS,
        "-dylib",
        "-undefined",
        "dynamic_lookup",
        "-install_name",
        f"@rpath/{LIBRARY_NAME}",
        "-o",
        str(output),
        str(folder / HOST_OBJECT),
        str(folder / IMPORTS_OBJECT),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(
            f"ld64.lld could not link the macOS dylib: {proc.stderr.strip().splitlines()[0]}; "
            f"the objects are in {folder}; on a Mac run: {MAC_LINK_COMMAND}"
        )


def _shader_source(executable) -> str:
    sources = [module.inspect_source() for module in _device_modules(executable.mod) if module.kind == "metal"]
    return "\n".join(sources)


def _device_modules(module):
    for imported in module.imports:
        yield imported
        yield from _device_modules(imported)


register(
    Backend(
        kind="metal", default_schedule=apply_gpu_default_schedules, build=build_relax, package=package, device="metal"
    )
)
