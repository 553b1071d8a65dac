"""Qualcomm Hexagon DSP: LLVM Hexagon codegen linked by ld.lld into a Hexagon ELF shared object.

What can honestly be produced without the (non-redistributable) Hexagon SDK: the model's code as
a Hexagon v73 shared object. It cannot run yet: its undefined symbols (libc/libm such as `erff`,
and the TVM FFI runtime) are provided on the DSP only by QuRT and a TVM runtime built with the SDK,
and the host reaches the DSP only through FastRPC and a signed (or unsigned-PD) skel library.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edgecc.backends import Backend, Built, PackagedLibrary, build_relax, register
from edgecc.backends._elf import library_machine
from edgecc.errors import ToolchainError

LIBRARY_NAME = "model_hexagon.so"
MISSING_TO_RUN = [
    "Hexagon SDK (QuRT runtime, Hexagon libc/libm: not redistributable, not installable here)",
    "TVM 0.27 runtime cross-built for Hexagon v73 with the SDK (libtvm_runtime + hexagon_rpc skel), "
    "providing the TVMFFI* symbols this library imports",
    "FastRPC on the phone (Android libcdsprpc.so) and a signed skel, or a device allowing unsigned PDs",
]


def default_schedule(mod, target):
    # Kernels are built as CPU-style loops; LLVM vectorizes for HVX. Hand HVX schedules need the SDK to test.
    from edgecc.schedules import apply_cpu_default_schedules

    return apply_cpu_default_schedules(mod, target)


def kernel_schedule(func, name, target, constant_inputs):
    from edgecc.schedules import cpu_kernel_schedule

    return cpu_kernel_schedule(func, name, target, constant_inputs)


def package(built: Built, target, folder: Path) -> PackagedLibrary:
    executable = built.executable
    folder = Path(folder)
    linker = target.toolchain.require()

    def link_hexagon_shared(output, objects, options=None, **_):
        proc = subprocess.run([linker, "-shared", "-o", str(output), *objects], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(
                f"ld.lld could not link the Hexagon shared object: "
                f"{(proc.stderr.strip().splitlines() or ['no output'])[0]}"
            )

    link_hexagon_shared.output_format = "so"
    library = folder / LIBRARY_NAME
    executable.export_library(str(library), fcompile=link_hexagon_shared)
    imports = _undefined_symbols(library)
    contents = {
        "format": "ELF 32-bit shared object (Hexagon)",
        "arch": library_machine(library),
        "cpu": target.tvm_target.get("mcpu"),
        "features": list(target.tvm_target.get("mattr", [])),
        "weights": "embedded as constants",
        "device_code": "the whole model (kernels and VM glue) compiled by LLVM's Hexagon backend",
        "undefined_symbols": imports,
    }
    return PackagedLibrary(
        library=LIBRARY_NAME,
        files=[LIBRARY_NAME],
        contents=contents,
        load=(
            "Not runnable from this artifact alone. With the Hexagon SDK: push "
            f"{LIBRARY_NAME} to the phone, start TVM's hexagon_rpc server (its skel in the DSP's unsigned "
            "PD), then from the host tvm.rpc session: lib = sess.load_module('"
            f"{LIBRARY_NAME}'); vm = tvm.relax.VirtualMachine(lib, sess.hexagon())"
        ),
        loadable=False,
        missing=list(MISSING_TO_RUN),
    )


def _undefined_symbols(library: Path) -> list[str]:
    nm = shutil.which("llvm-nm") or shutil.which("nm")
    if nm is None:
        return []
    proc = subprocess.run([nm, "-u", str(library)], capture_output=True, text=True)
    return sorted({line.split()[-1] for line in proc.stdout.splitlines() if line.strip()})


register(
    Backend(
        kind="hexagon",
        default_schedule=default_schedule,
        kernel_schedule=kernel_schedule,
        build=build_relax,
        package=package,
        device="hexagon",
        nhwc_convs=True,
    )
)
