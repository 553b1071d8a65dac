"""Where a compile or deploy writes, checked before any work: a path the user names inside the folder the
final swap replaces, an output folder that cannot be swapped (a mount point, a read-only file system),
and other builds' reports beside the output that are not reports at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from fixtures_hostile import assert_refused, invoke, snapshot, staging_left


@pytest.fixture
def project(tmp_path, tiny_model) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(tiny_model, root / "m.onnx")
    (root / "notes.txt").write_text("mine\n")
    return root


def _refused_up_front(project: Path, args, *fragments) -> None:
    before = snapshot(project)
    started = time.monotonic()
    result = invoke(*args, "-q", cwd=project)
    assert_refused(result.exit_code, result.stderr, *fragments, code=2)
    assert time.monotonic() - started < 10, "refused only after work was done"
    assert snapshot(project) == before and staging_left(project) == []


@pytest.mark.parametrize(
    "args, option",
    [
        (["compile", "m.onnx", "-o", "out/m", "--dump-ir", "out/m/ir"], "--dump-ir"),
        (["compile", "m.onnx", "-o", "out/m", "--dump-ir", "out/m"], "--dump-ir"),
        (["tune", "m.onnx", "-o", "out/m", "--tuning-logs", "out/m/logs", "--trials", "1"], "--tuning-logs"),
        (["compile", "m.onnx", "-o", "out/m", "--tuning-logs", "out/m/logs"], "--tuning-logs"),
        (["compile", "m.onnx", "-o", "out/m", "--inputs", "out/m/inputs.npz"], "--inputs"),
        (["compile", "m.onnx", "-o", "out/m", "--precision", "int8", "--calibration", "out/m/c.npz"], "--calibration"),
    ],
)
def test_a_path_named_inside_the_output_folder_is_refused_before_any_work(project, args, option):
    """`tune --tuning-logs out/m/logs -o out/m` lost the log it had just written, exit 0."""
    _refused_up_front(project, args, option, "is inside the output folder 'out/m'")


def test_a_path_inside_an_earlier_artifact_is_refused_too(project, tiny_artifact):
    shutil.copytree(tiny_artifact, project / "out")
    _refused_up_front(project, ["compile", "m.onnx", "-o", "out", "--dump-ir", "out/ir"], "--dump-ir")


def test_a_path_beside_the_output_folder_is_fine(project):
    result = invoke("compile", "m.onnx", "-o", "out/m", "--dump-ir", "out/ir", "--no-measure", "-q", cwd=project)
    assert result.exit_code == 0, result.stderr
    assert (project / "out" / "m" / "manifest.json").is_file() and any((project / "out" / "ir").iterdir())


@contextmanager
def _mounted(*args):
    """`mount ARGS` for the block, unmounted after; the test is skipped where mounting is not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a file system needs root and mount(8)")
    done = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(args[-1])], check=True)  # lazy: a library loaded from it stays mapped


@pytest.mark.parametrize("how", ["tmpfs", "bind"])
def test_an_output_folder_that_is_a_mount_point_fails_fast(project, tiny_artifact, tmp_path, how):
    """Renaming a mount point fails (EBUSY): this was found only after the whole compile."""
    point = project / "mnt"
    point.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = ["-t", "tmpfs", "none"] if how == "tmpfs" else ["--bind", elsewhere]
    with _mounted(*source, point):
        _refused_up_front(project, ["compile", "m.onnx", "-o", "mnt"], "'mnt' is a mount point", "-o ")
        _refused_up_front(project, ["deploy", tiny_artifact, "-o", "mnt"], "'mnt' is a mount point")
        result = invoke("deploy", tiny_artifact, "-o", "mnt/b", "-q", cwd=project)  # a folder inside it: fine
        assert result.exit_code == 0, result.stderr
        assert (point / "b" / "model.json").is_file()


def test_an_output_folder_on_a_read_only_file_system_fails_fast(project, tiny_artifact):
    point = project / "ro"
    point.mkdir()
    with _mounted("-t", "tmpfs", "-o", "ro", "none", point):
        _refused_up_front(project, ["compile", "m.onnx", "-o", "ro/m"], "is not writable")
        _refused_up_front(project, ["deploy", tiny_artifact, "-o", "ro/b"], "is not writable")


SIBLINGS = {
    "not-json": "{not json",
    "a-list": "[1, 2]",
    "deep": "[" * 100000 + "]" * 100000,
    "wrong-kinds": None,  # filled from a real report below
}


def _bad_siblings(parent: Path, good_report: dict) -> dict[str, str]:
    wrong = json.loads(json.dumps(good_report))
    wrong["options"] = {"batch": 1, "seq_len": 8, "input_specs": 7}
    wrong["latency"] = {"edgecc": ["median_ms"]}
    wrong["model"]["inputs"] = [5]
    texts = {**SIBLINGS, "wrong-kinds": json.dumps(wrong)}
    for name, text in texts.items():
        (parent / name).mkdir(parents=True)
        (parent / name / "report.json").write_text(text)
    return texts


def test_a_malformed_sibling_report_never_breaks_a_compile(project, tiny_artifact):
    """One bad report.json in a sibling folder failed every compile into that parent at the report step."""
    texts = _bad_siblings(project / "out", json.loads((tiny_artifact / "report.json").read_text()))
    before = snapshot(project / "out")
    result = invoke("compile", "m.onnx", "-o", "out/new", "--no-measure", "-q", cwd=project)
    assert result.exit_code == 0, result.stderr
    markdown = (project / "out" / "new" / "report.md").read_text()
    assert "Skipped (their report.json cannot be read)" in markdown
    assert all(f"{name}: " in markdown for name in texts)
    assert {k: v for k, v in snapshot(project / "out").items() if not k.startswith("new")} == before


def test_a_malformed_sibling_report_never_breaks_edgecc_report(tiny_artifact, tmp_path):
    parent = tmp_path / "builds"
    shutil.copytree(tiny_artifact, parent / "good")
    _bad_siblings(parent, json.loads((tiny_artifact / "report.json").read_text()))
    result = invoke("report", parent / "good")
    assert result.exit_code == 0, result.stderr
    assert "Skipped (their report.json cannot be read)" in (parent / "good" / "report.md").read_text()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[" * 100000 + "]" * 100000, "nests 100000 levels deep"),
        ("[1, 2]", "is not a report"),
        ("{not json", "is not valid JSON"),
    ],
    ids=["deep", "a-list", "not-json"],
)
def test_a_hostile_report_json_is_one_line_for_report_and_compare(tiny_artifact, tmp_path, text, fragment):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_artifact, bad)
    (bad / "report.json").write_text(text)
    before = snapshot(tmp_path)
    for command in (["report", bad], ["compare", tiny_artifact, bad, "--stored"], ["compare", bad, tiny_artifact]):
        result = invoke(*command)
        lines = [line for line in result.stderr.splitlines() if not line.startswith(("rendering", "timing"))]
        assert_refused(result.exit_code, "\n".join(lines), "report.json", fragment, code=2)
    assert snapshot(tmp_path) == before


def test_a_report_json_with_values_of_the_wrong_kind_is_one_line(tiny_artifact, tmp_path):
    """It passes the schema's top-level check, and broke rendering and compare deeper in."""
    bad = tmp_path / "bad"
    shutil.copytree(tiny_artifact, bad)
    report = json.loads((bad / "report.json").read_text())
    report["latency"] = {"edgecc": {key: "fast" for key in ("runs", "min_ms", "median_ms", "mean_ms", "p90_ms")}}
    report["latency"]["edgecc"].update(p99_ms=1, std_ms=1, cv=1)
    kernel = dict.fromkeys(("name", "calls", "ms_per_call", "flops", "bytes", "arithmetic_intensity"), 1)
    report["profile"] = {"kernels": [{**kernel, "total_ms": "slow", "achieved_gflops": 1, "achieved_gbs": 1}]}
    (bad / "report.json").write_text(json.dumps(report))
    before = snapshot(tmp_path)
    for command in (["report", bad], ["compare", tiny_artifact, bad, "--stored"]):
        result = invoke(*command)
        lines = [line for line in result.stderr.splitlines() if not line.startswith("rendering")]
        assert_refused(result.exit_code, "\n".join(lines), f"{bad / 'report.json'} holds a value of a kind", code=2)
    assert snapshot(tmp_path) == before  # both pages are rendered before either is written
