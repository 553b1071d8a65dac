"""The deployable folder: library, reference model, manifest with hashes and versions.

Manifest input entries are {"name", "shape", "dtype"} and, for an integer input that indexes a
tensor (token ids, token types, positions; the indices of a GatherElements, GatherND, ScatterElements,
ScatterND), "valid_range": [min, max], half-open: every value v must satisfy min <= v < max
(frontend/index_ranges.py). For indices that is -n <= v < n (ONNX's negative indices count from the
end). For ids into an embedding table it is 0 <= v < rows: negative ids are refused, although ONNX's
Gather would read row rows + id for -rows <= id < 0: a negative token id is a bug in the caller (an
ignore-index label, an unset slot), and refusing it keeps `edgecc run`, the Python API and a deployed
bundle's C API in agreement. Where the coordinates on an input's last axis index axes of different
sizes (GatherND, ScatterND), "valid_range" holds the widest and "valid_range_last_axis": [[min, max],
...] each coordinate's own. The library itself clamps indices into their tensor
(passes/clamp_gather_indices.py), so a caller that skips the check reads or writes a wrong element,
never memory past the tensor.
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


def input_entries(inputs, index_bounds: dict[str, tuple] | None = None) -> list[dict]:
    """Manifest entries for the inputs, with "valid_range" where the graph says which tensor an input indexes."""
    entries = []
    for spec in inputs:
        entry = spec.to_dict()
        if index_bounds and spec.name in index_bounds:
            low, high = index_bounds[spec.name]
            if isinstance(low, int):
                entry["valid_range"] = [int(low), int(high)]
            else:
                entry["valid_range"] = [min(low), max(high)]
                entry["valid_range_last_axis"] = [[int(lo), int(hi)] for lo, hi in zip(low, high)]
        entries.append(entry)
    return entries


def input_valid_ranges(manifest: dict) -> dict[str, tuple]:
    """name -> (min, max) of the inputs whose values must satisfy min <= v < max; min and max are
    tuples (one per position of the last axis) where the manifest gives "valid_range_last_axis"."""
    ranges = {}
    for entry in manifest.get("inputs", []):
        if entry.get("valid_range_last_axis") is not None:
            pairs = entry["valid_range_last_axis"]
            ranges[entry["name"]] = (tuple(int(p[0]) for p in pairs), tuple(int(p[1]) for p in pairs))
        elif entry.get("valid_range") is not None:
            ranges[entry["name"]] = (int(entry["valid_range"][0]), int(entry["valid_range"][1]))
    return ranges


def valid_ranges_from_reference(folder: Path, manifest: dict) -> dict[str, tuple]:
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
    return _index_bounds(onnx.load(str(path)), specs)


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
    index_bounds: dict[str, tuple] | None = None,
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
