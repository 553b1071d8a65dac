"""Run a bundle's bin/edgecc-run the way a bare board would, and compare it with ONNX Runtime.

Clean means: an empty environment (no PATH, so no Python; no LD_LIBRARY_PATH, so the TVM runtime
can only come from the bundle's lib/ through the rpath). An aarch64 bundle runs under QEMU
user-mode with a sysroot holding only libc, libm, libstdc++ and libgcc_s from the cross toolchain:
no Python and no TVM wheel in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.artifact.integrity import MAX_REPORT_BYTES, read_artifact_json
from edgecc.bundle.description import MODEL_JSON, output_file_name
from edgecc.errors import EdgeccError, ToolchainError

QEMU = {"aarch64": "qemu-aarch64-static"}
CROSS_GCC = {"aarch64": "aarch64-linux-gnu-gcc"}
# Only what the bundle's binaries link (see the README's system libraries): no Python, no TVM.
SYSROOT_LIBRARIES = [
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libstdc++.so.6",
    "libgcc_s.so.1",
]
LOADERS = {"aarch64": "ld-linux-aarch64.so.1"}


@dataclass
class BundleRun:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, np.ndarray]
    command: list[str]


def minimal_sysroot(arch: str, folder: Path) -> Path:
    """libc/libstdc++ of the cross toolchain and nothing else, laid out where the loader looks."""
    gcc = shutil.which(CROSS_GCC[arch])
    if gcc is None:
        raise ToolchainError(
            f"{CROSS_GCC[arch]} is not installed; install it with `apt-get install gcc-{arch}-linux-gnu`"
        )
    lib = folder / "lib" / f"{arch}-linux-gnu"
    lib.mkdir(parents=True, exist_ok=True)
    for name in [LOADERS[arch], *SYSROOT_LIBRARIES]:
        found = subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(found) or not os.path.exists(found):
            raise ToolchainError(f"{name} is not in the {arch} cross toolchain ({gcc})")
        shutil.copy2(os.path.realpath(found), lib / name)
    shutil.copy2(lib / LOADERS[arch], folder / "lib" / LOADERS[arch])
    return folder


def run_bundle(
    bundle: Path,
    inputs: dict[str, np.ndarray],
    work: Path,
    extra_args: tuple[str, ...] = (),
    env: dict | None = None,
    sysroot: Path | None = None,
) -> BundleRun:
    """bin/edgecc-run on `inputs` (saved as .npy) in an empty environment; its outputs read back."""
    bundle, work = Path(bundle).resolve(), Path(work)
    description = read_artifact_json(bundle / MODEL_JSON)
    arch = _arch(bundle / "bin" / "edgecc-run")
    work.mkdir(parents=True, exist_ok=True)
    args = []
    for name, array in inputs.items():
        path = work / f"{name}.npy"
        np.save(path, array)
        args += ["--input", f"{name}={path}"]
    out_dir = work / "out"
    command = [str(bundle / "bin" / "edgecc-run"), *args, "--output-dir", str(out_dir), *extra_args]
    if arch != os.uname().machine:
        qemu = shutil.which(QEMU.get(arch, f"qemu-{arch}-static"))
        if qemu is None:
            raise ToolchainError(
                f"{QEMU.get(arch)} is not installed; install it with `apt-get install qemu-user-static`"
            )
        if sysroot is None:
            raise EdgeccError(f"running an {arch} bundle here needs a sysroot (see minimal_sysroot)")
        command = [qemu, "-L", str(sysroot), *command]
    proc = subprocess.run(command, capture_output=True, text=True, env=env or {}, cwd=work, timeout=600)
    outputs = {}
    if proc.returncode == 0:
        outputs = {e["name"]: np.load(out_dir / output_file_name(e["name"])) for e in description["outputs"]}
    return BundleRun(proc.returncode, proc.stdout, proc.stderr, outputs, command)


def _arch(path: Path) -> str:
    from edgecc.backends._elf import library_machine

    return library_machine(path) or "unknown"


def check_bundle(bundle: Path, artifact: Path, inputs: dict[str, np.ndarray] | None = None) -> dict:
    """Run the bundle cleanly here (x86) or under QEMU (aarch64) and compare with ONNX Runtime.

    Returns {"status", "where", "outputs": [{name, max_abs_error, max_rel_error}], "tolerance"}.
    """
    from edgecc.artifact.loader import checked_file, read_manifest
    from edgecc.artifact.manifest import input_valid_ranges
    from edgecc.frontend.inputs import TensorSpec, sample_inputs
    from edgecc.measure.latency import onnxruntime_session
    from edgecc.measure.verification import output_errors, verdict

    manifest = read_manifest(artifact)
    description = read_artifact_json(Path(bundle) / MODEL_JSON)
    if not (Path(bundle) / "bin" / "edgecc-run").is_file():
        raise EdgeccError(
            f"{bundle} has no prebuilt bin/edgecc-run to check here (a {description['device']} "
            "bundle is built on its own platform; see its README.md)"
        )
    if inputs is None:
        specs = [TensorSpec.from_dict(e) for e in description["inputs"]]
        inputs = sample_inputs(specs, input_valid_ranges(description), seed=0)
    with tempfile.TemporaryDirectory(prefix="edgecc-bundle-check-") as tmp:
        sysroot = None
        arch = _arch(Path(bundle) / "bin" / "edgecc-run")
        if arch != os.uname().machine:
            sysroot = minimal_sysroot(arch, Path(tmp) / "sysroot")
        run = run_bundle(bundle, inputs, Path(tmp) / "run", sysroot=sysroot)
    if run.returncode != 0:
        raise EdgeccError(f"the bundle failed to run here: {(run.stderr.strip().splitlines() or ['no output'])[-1]}")
    reference = checked_file(artifact, manifest, manifest.get("reference_model", "reference.onnx"), "reference model")
    session = onnxruntime_session(reference, threads=1)
    names = [e["name"] for e in description["outputs"]]
    reference = dict(zip(names, session.run(names, inputs)))
    rows = output_errors(run.outputs, reference)
    tolerance = _tolerance(artifact, manifest.get("precision", "fp32"))
    status, reason = verdict(rows, tolerance)
    where = "this machine, empty environment" if sysroot is None else f"QEMU {arch} user-mode, libc-only sysroot"
    return {"status": status, "reason": reason, "where": where, "tolerance": tolerance, "outputs": rows}


def _tolerance(artifact: Path, precision: str) -> float | None:
    """The compile's own tolerance (report.json), so the bundle is held to what the artifact was; the
    precision's default when the compile could not verify (a board target compiled without a board)."""
    try:
        given = read_artifact_json(Path(artifact) / "report.json", MAX_REPORT_BYTES)["verification"].get("tolerance")
    except (EdgeccError, KeyError, TypeError, AttributeError):
        given = None
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        return float(given)
    from edgecc.options import CompileOptions

    return CompileOptions(precision=precision).resolved_tolerance()
