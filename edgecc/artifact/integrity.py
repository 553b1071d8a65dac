"""Before an artifact's file is loaded: it is inside the artifact folder, it is the file the compile
wrote (size and SHA-256 from the manifest), and a library is a whole ELF file.

A truncated or corrupted model.so crashed the loader natively (a bus error when dlopen maps pages
past the end of the file); a manifest naming `../x.so` or an absolute path loaded and ran whatever
was there; `edgecc deploy` copied every name in the manifest's file table, so `../../.bashrc` there
overwrote the user's. Every command that reads an artifact (run, bench, deploy, compare, report) goes
through these checks, and every problem is one ArtifactError line naming the file.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path, PurePosixPath

from edgecc.bounded_json import read_bounded_json
from edgecc.errors import ArtifactError

_RECOMPILE = "compile the model again into a new folder"
MAX_MANIFEST_BYTES = 16 << 20  # a compile writes a few KiB
MAX_REPORT_BYTES = 64 << 20  # profiles and tuning tables: a few MiB at most
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_artifact_json(path: Path, max_bytes: int = MAX_MANIFEST_BYTES):
    """A JSON file of an artifact (or a bundle), bounded in size and nesting depth."""
    return read_bounded_json(path, max_bytes, error=ArtifactError)


def _leaves_folder(name: str) -> bool:
    relative = PurePosixPath(name)
    return relative.is_absolute() or ".." in relative.parts or "\\" in name or name.startswith("~") or "\0" in name


def check_file_table(manifest: dict, manifest_path: Path) -> None:
    """The manifest's `files` table names only plain files of the folder, each with its size and SHA-256
    (a compile lists the folder's own files, never a path)."""
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise ArtifactError(f"{manifest_path}: field 'files' is not an object of file name -> {{bytes, sha256}}")
    for name, entry in files.items():
        if not name.strip() or "/" in name or _leaves_folder(name) or len(name) > 255:
            raise ArtifactError(
                f"{manifest_path}: the file table names '{name[:120]}', which is not a file of the artifact "
                "folder; refusing the artifact (an artifact only uses its own files)"
            )
        if not (
            isinstance(entry, dict)
            and type(entry.get("bytes")) is int
            and entry["bytes"] >= 0
            and isinstance(entry.get("sha256"), str)
            and _SHA256.fullmatch(entry["sha256"])
        ):
            raise ArtifactError(f"{manifest_path}: the file table's entry for '{name}' is not {{bytes, sha256}}")


def artifact_file(folder: Path, name, manifest_path: Path, what: str) -> Path:
    """`folder / name`, refusing names that leave the folder (absolute, `..`, a symlink out of it)."""
    folder = Path(folder)
    if not isinstance(name, str) or not name.strip():
        raise ArtifactError(f"{manifest_path}: the {what} entry must be a file name, not {name!r}")
    relative = PurePosixPath(name)
    if _leaves_folder(name) or len(name) > 1024:
        raise ArtifactError(
            f"{manifest_path}: the {what} '{name[:120]}' is not a file inside the artifact folder; "
            "refusing to load it (an artifact only loads its own files)"
        )
    path = folder / relative
    root = folder.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ArtifactError(
            f"{manifest_path}: the {what} '{name}' leads outside the artifact folder "
            f"(to {resolved}); refusing to load it"
        )
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: the artifact is incomplete ({_RECOMPILE})")
    return path


def sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_recorded_file(path: Path, manifest: dict, manifest_path: Path) -> None:
    """The file's size and SHA-256 equal what the manifest recorded when the compile wrote it."""
    entry = (manifest.get("files") or {}).get(path.name) if isinstance(manifest.get("files"), dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise ArtifactError(
            f"{manifest_path} records no SHA-256 for {path.name}, so {path} cannot be checked "
            f"before it is loaded ({_RECOMPILE})"
        )
    size = path.stat().st_size
    if isinstance(entry.get("bytes"), int) and entry["bytes"] != size:
        raise ArtifactError(
            f"{path} is {size} bytes, but the compile wrote {entry['bytes']}: it was truncated or "
            f"changed after the compile ({_RECOMPILE})"
        )
    if sha256(path) != entry["sha256"]:
        raise ArtifactError(
            f"{path} does not match the SHA-256 in {manifest_path}: it was changed or damaged "
            f"after the compile ({_RECOMPILE})"
        )


# ELF class (EI_CLASS) -> where the header keeps the table offsets and sizes, and how a program
# header gives a segment's type, file offset and file size: 32-bit for Hexagon, 64-bit elsewhere
_ELF_LAYOUTS = {
    1: {"tables": ("II", 28), "sizes": 42, "segment": "II8xI"},
    2: {"tables": ("QQ", 32), "sizes": 54, "segment": "I4xQ16xQ"},
}


def check_whole_elf(path: Path) -> None:
    """An ELF library whose headers and loadable segments all lie inside the file (what dlopen maps).

    The hash check already catches a damaged file; this guards the load itself, for a library whose
    manifest was rewritten to match it."""
    with open(path, "rb") as handle:
        head = handle.read(64)
        size = path.stat().st_size
        if head[:4] != b"\x7fELF":
            return  # not ELF (Mach-O, a device file): the backend says whether it loads here
        layout = _ELF_LAYOUTS.get(head[4]) if len(head) >= 52 else None
        if layout is None or head[5] not in (1, 2) or (head[4] == 2 and len(head) < 64):
            raise ArtifactError(f"{path} is not a whole ELF library (header cut short or damaged)")
        order = "<" if head[5] == 1 else ">"
        phoff, shoff = struct.unpack_from(order + layout["tables"][0], head, layout["tables"][1])
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, layout["sizes"])
        if phoff + phnum * phentsize > size or shoff + shnum * shentsize > size:
            raise ArtifactError(f"{path} is truncated: its ELF headers point past the end of the file ({size} bytes)")
        handle.seek(phoff)
        table = handle.read(phnum * phentsize)
    for index in range(phnum):
        kind, offset, filesz = struct.unpack_from(order + layout["segment"], table, index * phentsize)
        if kind == 1 and offset + filesz > size:  # PT_LOAD
            raise ArtifactError(
                f"{path} is truncated: a loadable segment ends at byte {offset + filesz}, past the "
                f"end of the file ({size} bytes)"
            )
