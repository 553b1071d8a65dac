"""The folder a compile writes its artifact into: checked before any work is done.

A compile replaces its output folder when it succeeds, so the folder may only be one of:
- a folder that does not exist yet (its parent is created),
- an empty folder,
- an earlier edgecc artifact: a manifest.json whose "format" is edgecc's, holding only files an
  edgecc compile writes (those its manifest lists, the manifest, the reports).
Anything else (the current folder or one above it, the home folder, `/`, a folder holding the
model being compiled or any file edgecc did not write) is refused in one line, before any work.
So are a path the user names for the compile to write or read (--dump-ir, --tuning-logs, ...)
inside the output folder, which the final swap would delete, and an output folder that cannot be
swapped at all (a mount point: renaming it fails with EBUSY; a parent that is read-only), which
would otherwise fail only after the whole compile. `edgecc deploy` uses the same checks.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from edgecc.artifact.integrity import MAX_MANIFEST_BYTES
from edgecc.artifact.manifest import ARTIFACT_FORMAT, MANIFEST
from edgecc.bounded_json import read_bounded_json
from edgecc.errors import EdgeccError

ARTIFACT_FORMAT_PREFIX = ARTIFACT_FORMAT.split("/")[0] + "/"
# Files a compile writes after the manifest's file table is made (so the table does not list them).
WRITTEN_AFTER_MANIFEST = ("report.json", "report.md", "report.html")


def check_output_folder(output: Path, model: str | Path | None = None, named=()) -> None:
    """Fail before any work when the artifact folder cannot (or must not) be replaced by a compile.

    `model` is what the user asked to compile: when it is a path, the output may not hold it.
    `named`: (option, path) pairs of the other paths the user gave (--dump-ir DIR, ...).
    (An empty -o reaches here as `.`, the current folder, and is refused as such.)"""
    text = check_output_location(output, model=model)
    output = Path(output)
    refuse_paths_inside(output, named)
    if output.is_dir():
        _require_replaceable(output, text)
    require_swappable(output)


def check_output_location(output: Path, what: str = "output folder", model=None) -> str:
    """Refuse an output folder that is not a plain folder of the user's to replace: empty, a link, `/`,
    the home folder, the current folder or one above it, the model (`model`) or a folder holding it, a
    file. Returns the folder as quoted in messages."""
    text = repr(str(output))
    if str(output).strip() == "":
        raise EdgeccError(f"the {what} '' is empty: pass a new or empty folder, e.g. -o out/model")
    output = Path(output)
    if output.is_symlink():
        raise EdgeccError(
            f"the {what} {text} is a symbolic link; pass the folder itself (edgecc replaces "
            "the folder it writes, and will not replace a link)"
        )
    final = output.resolve()
    _refuse_protected(final, text, what)
    source = _source_path(model)
    if source is not None and source == final:
        raise EdgeccError(f"the {what} {text} is the model being compiled; pick another -o folder")
    if source is not None and final in source.parents:
        raise EdgeccError(
            f"the {what} {text} holds the model being compiled ({model}); a compile replaces "
            "its output folder: pick another -o folder"
        )
    if output.exists() and not output.is_dir():
        raise EdgeccError(f"cannot write the {what} {text}: a file of that name exists")
    return text


def refuse_paths_inside(output: Path, named, what: str = "output folder") -> None:
    """A path the user named (option, path) may not lie in the folder edgecc replaces when it finishes:
    the swap would delete what was written there (`tune --tuning-logs out/m/logs -o out/m`)."""
    final = Path(output).resolve()
    for option, path in named:
        if path is None or str(path).strip() == "":
            continue
        resolved = Path(path).expanduser().resolve()
        if resolved == final or final in resolved.parents:
            raise EdgeccError(
                f"{option} {str(path)!r} is inside the {what} {str(output)!r}, which edgecc replaces "
                f"when it finishes (what is there would be deleted): put it outside, e.g. {option} "
                f"{final.parent / resolved.name}"
            )


def require_swappable(output: Path, what: str = "output folder") -> None:
    """The finished folder is renamed into place beside `output`: fail now, not after all the work,
    when that cannot happen (a mount point, a read-only or unwritable parent, a sticky folder)."""
    text = repr(str(output))
    final = Path(output).resolve()
    if final.exists() and _is_mount_point(final):
        raise EdgeccError(
            f"the {what} {text} is a mount point, which cannot be replaced (edgecc writes a new folder "
            f"beside it and renames it into place): pass a folder inside it, e.g. -o {final / 'model'}"
        )
    probe = final.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise EdgeccError(f"cannot write the {what} {text}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise EdgeccError(f"cannot write the {what} {text}: {probe} is not writable")
    if final.exists() and _sticky_and_not_ours(final):
        raise EdgeccError(
            f"cannot replace the {what} {text}: it belongs to another user and {final.parent} only lets "
            "owners rename their folders (sticky bit)"
        )
    try:  # a folder made and renamed where the real one will be: what the final swap does
        made = Path(tempfile.mkdtemp(prefix=f".edgecc-probe-{os.getpid()}-", dir=probe))
        renamed = made.with_name(made.name + "-renamed")
        os.rename(made, renamed)
        renamed.rmdir()
    except OSError as exc:
        raise EdgeccError(
            f"cannot write the {what} {text}: making and renaming a folder in {probe} failed ({exc.strerror})"
        ) from None


def _is_mount_point(path: Path) -> bool:
    if os.path.ismount(path):
        return True
    try:  # a bind mount from the same file system: ismount cannot tell, the mount table can
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            table = handle.read(16 << 20)
    except OSError:
        return False
    points = {_unescape(line.split(" ")[4]) for line in table.splitlines() if line.count(" ") >= 4}
    return str(path) in points


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _sticky_and_not_ours(path: Path) -> bool:
    uid = os.geteuid()
    parent = path.parent.stat()
    return uid != 0 and bool(parent.st_mode & stat.S_ISVTX) and uid not in (parent.st_uid, path.stat().st_uid)


def _refuse_protected(final: Path, text: str, what: str) -> None:
    cwd = Path.cwd().resolve()
    if final == Path(final.anchor):
        raise EdgeccError(f"the {what} {text} is the root folder; pass a new or empty folder, e.g. -o out/model")
    if final == Path.home().resolve():
        raise EdgeccError(f"the {what} {text} is your home folder; pass a new or empty folder, e.g. -o out/model")
    if final == cwd or final in cwd.parents:
        where = "the current folder" if final == cwd else f"a folder above the current one ({final})"
        raise EdgeccError(
            f"the {what} {text} is {where}; edgecc replaces the folder it writes: "
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
        manifest = read_bounded_json(folder / MANIFEST, MAX_MANIFEST_BYTES)
    except EdgeccError:
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
