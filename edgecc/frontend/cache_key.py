"""What an exported ONNX file in the cache is keyed by: the content it was made from, never a path.

A Hugging Face folder whose weights changed must not reuse the export of the old weights (it did,
and verification "passed", because it compared the stale export with itself). So a folder's key
hashes its config and weight files (every file byte), and a built-in's key hashes its definition
(the sources that build and export it, EXPORT_VERSION, its weights folder when it has one); both
add the batch/sequence shape and the torch and transformers versions that did the export.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

# Files of a Hugging Face folder that decide what the exported graph computes. Tokenizer files do
# not (the graph starts at token ids) and are left out, so retokenising does not re-export.
_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".npz")
_MODEL_FILE_NAMES = ("config.json", "generation_config.json", "preprocessor_config.json")


def model_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(
        p
        for p in files
        if p.name in _MODEL_FILE_NAMES or p.suffix in _MODEL_FILE_SUFFIXES or p.name.endswith(".index.json")
    )


def folder_digest(folder: Path) -> str:
    """SHA-256 over the relative name and bytes of every file that decides the model's numbers."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in model_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def exporter_versions() -> str:
    versions = []
    for package in ("torch", "transformers"):
        try:
            versions.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package}=none")
    return ",".join(versions)


def source_digest(*modules) -> str:
    """SHA-256 of the source files of the given modules (a built-in's definition and its exporter)."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
