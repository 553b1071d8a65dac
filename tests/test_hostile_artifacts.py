"""Damaged or hostile artifact folders: every problem is one line naming the file, never a native crash,
and an artifact only ever loads its own files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fixtures_hostile import REPO, assert_refused, invoke


@pytest.fixture
def artifact(tiny_artifact, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    return copy


def _edit_manifest(folder, **changes):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def _refused_everywhere(folder, *fragments):
    for command in (["run", folder], ["bench", folder, "--min-seconds", "0.1"]):
        result = invoke(*command)
        assert_refused(result.exit_code, result.stderr, *fragments, code=2)


def test_a_truncated_library_is_one_line_not_a_bus_error(artifact):
    library = artifact / "model.so"
    library.write_bytes(library.read_bytes()[: library.stat().st_size // 3])
    _refused_everywhere(artifact, f"{library}", "was truncated or changed after the compile")


def test_a_corrupted_library_of_the_same_size_fails_its_hash(artifact):
    library = artifact / "model.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    library.write_bytes(bytes(data))
    _refused_everywhere(artifact, f"{library} does not match the SHA-256 in {artifact / 'manifest.json'}")


def test_a_truncated_library_whose_manifest_was_rewritten_to_match_is_caught_before_dlopen(artifact):
    """The hash is not the only guard: a library cut short is refused before the loader maps it."""
    from edgecc.artifact.integrity import sha256

    library = artifact / "model.so"
    library.write_bytes(library.read_bytes()[:200000])
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"]["model.so"] = {"bytes": library.stat().st_size, "sha256": sha256(library)}
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    _refused_everywhere(artifact, f"{library} is truncated")


def test_loading_a_truncated_library_in_a_fresh_process_exits_cleanly(artifact):
    """The same through the real program: exit 2 and one line (a bus error would be exit -7 / 135)."""
    library = artifact / "model.so"
    library.write_bytes(library.read_bytes()[:100000])
    done = subprocess.run(
        [sys.executable, "-m", "edgecc", "run", str(artifact)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert_refused(
        done.returncode,
        "\n".join(line for line in done.stderr.splitlines() if "Warning" not in line),
        str(library),
        code=2,
    )


@pytest.mark.parametrize(
    "library, fragment",
    [
        ("../model.so", "is not a file inside the artifact folder"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "is not a file inside the artifact folder"),
        ("sub/../../model.so", "is not a file inside the artifact folder"),
        ("", "must be a file name"),
    ],
)
def test_library_paths_outside_the_artifact_are_refused(artifact, library, fragment):
    shutil.copy(artifact / "model.so", artifact.parent / "model.so")  # something real where it points
    _edit_manifest(artifact, library=library)
    _refused_everywhere(artifact, str(artifact / "manifest.json"), fragment)


def test_a_symlink_out_of_the_artifact_is_refused(artifact, tmp_path):
    outside = tmp_path / "elsewhere.so"
    shutil.move(artifact / "model.so", outside)
    (artifact / "model.so").symlink_to(outside)
    _refused_everywhere(artifact, "leads outside the artifact folder")


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda f: (f / "manifest.json").write_text("{not json"), "manifest.json is not valid JSON"),
        (lambda f: (f / "manifest.json").write_text("[1, 2]"), "is not an edgecc artifact manifest"),
        (lambda f: _edit_manifest(f, format="someone-else/1"), "is not an edgecc artifact manifest"),
        (lambda f: _edit_manifest(f, inputs="input_ids"), "field 'inputs' is missing or not a list"),
        (
            lambda f: _edit_manifest(f, inputs=[{"name": "input_ids", "shape": [1, -8], "dtype": "int64"}]),
            "is not {name, shape, dtype}",
        ),
        (lambda f: _edit_manifest(f, files={}), "records no SHA-256 for model.so"),
        (lambda f: (f / "model.so").unlink(), "model.so is missing"),
        (lambda f: (f / "manifest.json").unlink(), "is not an edgecc artifact (no manifest.json)"),
    ],
)
def test_damaged_manifests_and_missing_files_name_the_file(artifact, damage, fragment):
    damage(artifact)
    _refused_everywhere(artifact, fragment)


def test_bench_checks_the_reference_model_it_loads(artifact):
    reference = artifact / "reference.onnx"
    reference.write_bytes(reference.read_bytes()[:1000])
    result = invoke("bench", artifact, "--min-seconds", "0.1")
    assert_refused(result.exit_code, result.stderr, str(reference), code=2)


def test_not_an_artifact_at_all(tmp_path):
    (tmp_path / "file").write_text("x")
    for target, fragment in (
        (tmp_path / "nowhere", "is not an edgecc artifact: no such folder"),
        (tmp_path / "file", "is a file, not an artifact folder"),
        (tmp_path, "is not an edgecc artifact"),
    ):
        result = invoke("run", target)
        assert_refused(result.exit_code, result.stderr, fragment, code=2)


def test_run_outputs_never_overwrite_the_artifact_or_land_on_a_folder(artifact, tmp_path):
    from fixtures_hostile import snapshot

    before = snapshot(artifact)
    for target, fragment in (
        (artifact / "model.so", "would overwrite a file of the artifact"),
        (artifact / "manifest.json", "would overwrite a file of the artifact"),
        (tmp_path, "is a folder"),
    ):
        result = invoke("run", artifact, "--outputs", target)
        assert_refused(result.exit_code, result.stderr, fragment, code=2)
    assert snapshot(artifact) == before
    assert invoke("run", artifact, "--outputs", tmp_path / "out.npz").exit_code == 0


def _elf32(segment_bytes: int, file_bytes: int) -> bytes:
    """A little-endian 32-bit ELF (Hexagon's class) with one PT_LOAD of `segment_bytes` at offset 0."""
    import struct

    header = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    header += struct.pack("<HHIIIIIHHHHHH", 3, 164, 1, 0, 52, 0, 0, 52, 32, 1, 0, 0, 0)
    program = struct.pack("<IIIIIIII", 1, 0, 0, 0, segment_bytes, segment_bytes, 5, 4096)
    return (header + program).ljust(file_bytes, b"\0")


def test_a_32_bit_elf_library_is_checked_not_refused(tmp_path):
    """Hexagon libraries are 32-bit ELF: the check had refused every one as 'not a whole 64-bit ELF
    library', which failed `edgecc deploy` for the snapdragon Hexagon target."""
    from edgecc.artifact.integrity import check_whole_elf
    from edgecc.errors import ArtifactError

    whole = tmp_path / "whole.so"
    whole.write_bytes(_elf32(segment_bytes=256, file_bytes=256))
    check_whole_elf(whole)
    cut = tmp_path / "cut.so"
    cut.write_bytes(_elf32(segment_bytes=4096, file_bytes=256))
    with pytest.raises(ArtifactError, match="loadable segment ends at byte 4096"):
        check_whole_elf(cut)
