"""The folder a compile writes its artifact into: checked before any work is done.

A compile replaces its output folder when it succeeds, so the folder may only be one of:
- a folder that does not exist yet (its parent is created),
- an empty folder,
- an earlier edgecc artifact: a manifest.json whose "format" is edgecc's, holding only files an
  edgecc compile writes (those its manifest lists, the manifest, the reports).
Anything else (the current folder or one above it, the home folder, `/`, a folder holding the
model being compiled or any file edgecc did not write) is refused in one line, before any work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgecc.artifact.manifest import ARTIFACT_FORMAT, MANIFEST
from edgecc.errors import EdgeccError

ARTIFACT_FORMAT_PREFIX = ARTIFACT_FORMAT.split("/")[0] + "/"
# Files a compile writes after the manifest's file table is made (so the table does not list them).
WRITTEN_AFTER_MANIFEST = ("report.json", "report.md", "report.html")


def check_output_folder(output: Path, model: str | Path | None = None) -> None:
    """Fail before any work when the artifact folder cannot (or must not) be replaced by a compile.

    `model` is what the user asked to compile: when it is a path, the output may not hold it.
    (An empty -o reaches here as `.`, the current folder, and is refused as such.)"""
    text = repr(str(output))
    if str(output).strip() == "":
        raise EdgeccError("the output folder '' is empty: pass a new or empty folder, e.g. -o out/model")
    output = Path(output)
    if output.is_symlink():
        raise EdgeccError(
            f"the output folder {text} is a symbolic link; pass the folder itself (edgecc replaces "
            "the folder it writes, and will not replace a link)"
        )
    final = output.resolve()
    _refuse_protected(final, text)
    source = _source_path(model)
    if source is not None and source == final:
        raise EdgeccError(f"the output folder {text} is the model being compiled; pick another -o folder")
    if source is not None and final in source.parents:
        raise EdgeccError(
            f"the output folder {text} holds the model being compiled ({model}); a compile replaces "
            "its output folder: pick another -o folder"
        )
    if output.exists() and not output.is_dir():
        raise EdgeccError(f"cannot write the output folder {text}: a file of that name exists")
    if output.is_dir():
        _require_replaceable(output, text)
    probe = final.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise EdgeccError(f"cannot write the output folder {text}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise EdgeccError(f"cannot write the output folder {text}: {probe} is not writable")


def _refuse_protected(final: Path, text: str) -> None:
    cwd = Path.cwd().resolve()
    if final == Path(final.anchor):
        raise EdgeccError(f"the output folder {text} is the root folder; pass a new or empty folder, e.g. -o out/model")
    if final == Path.home().resolve():
        raise EdgeccError(
            f"the output folder {text} is your home folder; pass a new or empty folder, e.g. -o out/model"
        )
    if final == cwd or final in cwd.parents:
        where = "the current folder" if final == cwd else f"a folder above the current one ({final})"
        raise EdgeccError(
            f"the output folder {text} is {where}; a compile replaces its output folder: "
            "pass a new or empty folder, e.g. -o out/model"
        )


def _source_path(model) -> Path | None:
    if model is None:
        return None
    path = Path(str(model))
    return path.resolve() if path.exists() else None


def is_edgecc_artifact(folder: Path) -> bool:
    return _artifact_manifest(Path(folder)) is not None


def _artifact_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith(ARTIFACT_FORMAT_PREFIX):
        return None
    return manifest


def _require_replaceable(folder: Path, text: str) -> None:
    try:
        entries = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise EdgeccError(f"cannot read the output folder {text}: {exc.strerror}") from None
    if not entries:
        return
    manifest = _artifact_manifest(folder)
    if manifest is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise EdgeccError(
            f"the output folder {text} exists, is not empty ({shown}) and is not an edgecc artifact; "
            "a compile replaces its output folder, so it only replaces an earlier artifact or an "
            "empty folder: remove it yourself or pick another -o folder"
        )
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    known = set(files) | {MANIFEST, *WRITTEN_AFTER_MANIFEST}
    foreign = [name for name in entries if name not in known]
    if foreign:
        raise EdgeccError(
            f"the output folder {text} is an edgecc artifact but also holds {', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}, which edgecc did not write; not replacing it "
            "(move those files or pick another -o folder)"
        )
