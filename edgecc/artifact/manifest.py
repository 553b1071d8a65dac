"""The deployable folder: library, reference model, manifest with hashes and versions.

Manifest input entries are {"name", "shape", "dtype"} and, for an integer input that indexes an
embedding table (token ids, token types, positions), "valid_range": [min, max], half-open:
every value v must satisfy min <= v < max (max is the table's row count). Negative ids are refused,
although ONNX's Gather would read row rows + id for -rows <= id < 0: a negative token id is a bug in
the caller (an ignore-index label, an unset slot), and refusing it keeps `edgecc run`, the Python
API and a deployed bundle's C API in agreement. The library itself clamps ids into the table
(passes/clamp_gather_indices.py), so a caller that skips the check reads a wrong row, never memory
past the table.
"""

from __future__ import annotations

from pathlib import Path

from edgecc.artifact.integrity import sha256
from edgecc.atomic import write_json_atomic

MANIFEST = "manifest.json"
ARTIFACT_FORMAT = "edgecc-artifact/1"
REFERENCE_MODEL = "reference.onnx"


def versions() -> dict:
    import onnxruntime
    import tvm

    from edgecc import __version__

    return {"edgecc": __version__, "tvm": tvm.__version__, "onnxruntime": onnxruntime.__version__}


def file_table(folder: Path) -> dict:
    return {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def input_entries(inputs, index_bounds: dict[str, int] | None = None) -> list[dict]:
    """Manifest entries for the inputs, with "valid_range" where the graph says which table an input indexes."""
    entries = []
    for spec in inputs:
        entry = spec.to_dict()
        if index_bounds and spec.name in index_bounds:
            entry["valid_range"] = [0, int(index_bounds[spec.name])]
        entries.append(entry)
    return entries


def input_valid_ranges(manifest: dict) -> dict[str, tuple[int, int]]:
    """name -> (min, max) of the inputs whose values must satisfy min <= v < max."""
    return {
        e["name"]: (int(e["valid_range"][0]), int(e["valid_range"][1]))
        for e in manifest.get("inputs", [])
        if e.get("valid_range") is not None
    }


def valid_ranges_from_reference(folder: Path, manifest: dict) -> dict[str, tuple[int, int]]:
    """The valid ranges computed from the artifact's reference.onnx (artifacts compiled before the field)."""
    import onnx

    from edgecc.artifact.integrity import artifact_file, check_recorded_file
    from edgecc.frontend.inputs import TensorSpec
    from edgecc.frontend.onnx_import import _index_bounds

    name = manifest.get("reference_model", REFERENCE_MODEL)
    if not (Path(folder) / str(name)).is_file():
        return {}
    path = artifact_file(folder, name, Path(folder) / MANIFEST, "reference model")
    check_recorded_file(path, manifest, Path(folder) / MANIFEST)
    specs = [TensorSpec.from_dict(e) for e in manifest["inputs"]]
    return {name: (0, int(rows)) for name, rows in _index_bounds(onnx.load(str(path)), specs).items()}


def write_manifest(
    folder: Path,
    *,
    model_name: str,
    target,
    packaged,
    inputs,
    outputs,
    backend,
    precision: str,
    applied_precision: dict | None = None,
    index_bounds: dict[str, int] | None = None,
    buckets: dict | None = None,
) -> dict:
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
        "precision": precision,  # what the layers got (edgecc.passes.precision.applied), not what was asked
        **({"precision_applied": applied_precision} if applied_precision else {}),
        "inputs": input_entries(inputs, index_bounds),
        "outputs": [spec.to_dict() for spec in outputs],
        "reference_model": REFERENCE_MODEL,
        "target": target.to_dict(),
        **({"buckets": buckets} if buckets else {}),  # dynamic shapes: edgecc/buckets/compile.py
        "versions": versions(),
        "files": file_table(folder),
    }
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    return manifest
