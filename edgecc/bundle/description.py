"""bundle/model.json: the small description the C API reads (and any tool may read).

{
  "format": "edgecc-bundle/1",
  "model": "tinybert-4", "target": "raspberry-pi-5",
  "library": "model.so",            # relative to the bundle
  "device": "cpu",                  # cpu | cuda | metal | hexagon
  "threads": 4,                     # the board's cores; TVM_NUM_THREADS or the open option override it
  "inputs":  [{"name": "input_ids", "shape": [1, 128], "dtype": "int64", "valid_range": [0, 30522]}],
  "outputs": [{"name": "last_hidden_state", "shape": [1, 128, 312], "dtype": "float32"}],
  "device_runtime_libraries": ["lib/libtvm_runtime_cuda.so"],   # loaded at open (GPU kinds only)
  "cuda": {"min_driver_version": 13000, "runtime_library": "libcudart.so.13", ...},  # Jetson only
  "files": {"model.so": {"bytes": 81920, "sha256": "9f86d0..."}, ...}   # every file but model.json
}

"valid_range" is the manifest's field (see edgecc/artifact.py): half-open, min <= id < max.
"dynamic_axes" (a model compiled with --max-seq-len / --max-batch): {"1": "sequence"}; that axis
takes any size 1..shape[axis], the same for every input, and the outputs' axes follow it.
"files" (written by edgecc/bundle/write.py): the C API loads nothing model.json names unless it lies
inside the bundle and has the size and SHA-256 recorded here (and, on Linux, ELF headers and
segments inside the file).
"""

from __future__ import annotations

from pathlib import Path

from edgecc.artifact.manifest import valid_ranges_from_reference

BUNDLE_FORMAT = "edgecc-bundle/1"
MODEL_JSON = "model.json"
# Bytes an output name keeps in its .npy file name; every other byte is written %XX (see output_file_name).
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")


def output_file_name(name: str) -> str:
    """The file bin/edgecc-run writes output `name` to (edgecc_run.c's output_file_name does the same).

    Letters, digits, '_', '-' and '.' stay; every other byte of the UTF-8 name, '%' itself and a
    leading '.' become %XX (two upper-case hex digits). Undoing it gives the name back, so two
    outputs never share a file: `y/1` is y%2F1.npy, `y_1` is y_1.npy."""
    text = "".join(
        chr(byte) if byte in _PLAIN and not (i == 0 and byte == ord(".")) else f"%{byte:02X}"
        for i, byte in enumerate(name.encode())
    )
    return text + ".npy"


def tensor_entries(entries: list[dict]) -> list[dict]:
    keep = ("name", "shape", "dtype", "valid_range", "dynamic_axes")
    return [{k: entry[k] for k in keep if k in entry} for entry in entries]


def inputs_with_ranges(manifest: dict, artifact: Path, log) -> list[dict]:
    """The manifest's inputs; an artifact from before valid_range existed gets them from reference.onnx."""
    inputs = [dict(entry) for entry in manifest["inputs"]]
    if any("valid_range" in entry for entry in inputs):
        return inputs
    ranges = valid_ranges_from_reference(artifact, manifest)
    if ranges:
        log(
            f"deploy: the manifest has no valid_range (an older compile); computed from "
            f"{manifest.get('reference_model', 'reference.onnx')}: "
            + ", ".join(f"{name} {lo} <= id < {hi}" for name, (lo, hi) in ranges.items())
        )
    for entry in inputs:
        if entry["name"] in ranges:
            entry["valid_range"] = list(ranges[entry["name"]])
    return inputs


def model_description(
    manifest: dict, inputs: list[dict], device: str, threads: int, device_runtime: list[str], cuda: dict | None
) -> dict:
    description = {
        "format": BUNDLE_FORMAT,
        "model": manifest.get("model"),
        "target": manifest["target"]["name"],
        "library": manifest["library"],
        "device": device,
        "threads": int(threads),
        "inputs": tensor_entries(inputs),
        "outputs": tensor_entries(manifest["outputs"]),
    }
    if device_runtime:
        description["device_runtime_libraries"] = device_runtime
    if cuda:
        description["cuda"] = cuda
    return description
