"""The deployable folder: library, reference model, manifest with hashes and versions."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgecc.artifact.loader import MANIFEST
from edgecc.atomic import write_json_atomic

ARTIFACT_FORMAT = "edgecc-artifact/1"
REFERENCE_MODEL = "reference.onnx"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict:
    import onnxruntime
    import tvm

    from edgecc import __version__

    return {"edgecc": __version__, "tvm": tvm.__version__, "onnxruntime": onnxruntime.__version__}


def file_table(folder: Path) -> dict:
    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
            for p in sorted(Path(folder).iterdir()) if p.is_file() and not p.name.startswith(".")}


def write_manifest(folder: Path, *, model_name: str, target, packaged, inputs, outputs, backend,
                   precision: str) -> dict:
    manifest = {
        "format": ARTIFACT_FORMAT,
        "model": model_name,
        "library": packaged.library,
        "device": backend.device,
        "runs_on_host": bool(target.capabilities.runs_on_host),
        "loadable": packaged.loadable,
        "missing": packaged.missing,
        "contents": packaged.contents,
        "load": packaged.load,
        "precision": precision,
        "inputs": [spec.to_dict() for spec in inputs],
        "outputs": [spec.to_dict() for spec in outputs],
        "reference_model": REFERENCE_MODEL,
        "target": target.to_dict(),
        "versions": versions(),
        "files": file_table(folder),
    }
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    return manifest
