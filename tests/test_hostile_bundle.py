"""A damaged or crafted bundle, and outputs the runner must not lose: bin/edgecc-run (the C API under
it) checks the bundle before it loads anything, and writes every output whole, to a name of its own.

Every refusal: exit 1, exactly one `edgecc-run: error:` line on stderr, nothing loaded (a library
outside the bundle would leave a marker file), nothing the user had replaced or half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fixtures_deploy import quiet

from edgecc.bundle.check import run_bundle
from edgecc.bundle.description import output_file_name

pytestmark = pytest.mark.toolchain("g++")

MARKER_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void loaded(void) {
  FILE *f = fopen(getenv("EDGECC_TEST_MARKER") ? getenv("EDGECC_TEST_MARKER") : "/dev/null", "w");
  if (f) fclose(f);
}
"""


def _refused(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # not a signal (SIGBUS, SIGSEGV), not 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecc-run: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _info(bundle: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """--info opens the model: model.json read, files checked, libraries loaded."""
    return subprocess.run(
        [str(bundle / "bin" / "edgecc-run"), "--info"], capture_output=True, text=True, env=env or {}, timeout=120
    )


def _copy(bundle: Path, to: Path) -> Path:
    shutil.copytree(bundle, to, symlinks=True)
    return to


def _edit_description(bundle: Path, edit) -> None:
    description = json.loads((bundle / "model.json").read_text())
    edit(description)
    (bundle / "model.json").write_text(json.dumps(description))


def _record(bundle: Path, name: str) -> None:
    """Record the file as it is now, as a deploy would: the checks after size and hash must catch it."""
    data = (bundle / name).read_bytes()
    _edit_description(
        bundle, lambda d: d["files"].__setitem__(name, {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    )


@pytest.fixture(scope="module")
def marker_library(tmp_path_factory) -> Path:
    """A shared library that creates $EDGECC_TEST_MARKER when it is loaded."""
    folder = tmp_path_factory.mktemp("marker")
    (folder / "marker.c").write_text(MARKER_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / "marker.so"), str(folder / "marker.c")], check=True)
    return folder / "marker.so"


# ---- the bundle is checked before anything is loaded ------------------------------------------------------


def test_a_truncated_model_library_is_refused_not_a_sigbus(host_bundle, tmp_path):
    bundle = _copy(host_bundle[1], tmp_path / "b")
    data = (bundle / "model.so").read_bytes()
    (bundle / "model.so").write_bytes(data[: len(data) // 2])
    _refused(_info(bundle), f"model.so has {len(data) // 2} bytes, model.json records {len(data)}", "deploy it again")


def test_a_zeroed_page_in_the_model_library_is_refused_not_wrong_outputs(host_bundle, tmp_path):
    bundle = _copy(host_bundle[1], tmp_path / "b")
    data = bytearray((bundle / "model.so").read_bytes())
    data[8192:12288] = bytes(4096)
    (bundle / "model.so").write_bytes(bytes(data))
    _refused(_info(bundle), "model.so does not match the SHA-256 model.json records")


def test_segments_past_the_end_are_refused_even_when_size_and_hash_were_rewritten(host_bundle, tmp_path):
    """The ELF check stands on its own: a library cut short whose model.json was updated to match."""
    bundle = _copy(host_bundle[1], tmp_path / "b")
    data = bytearray((bundle / "model.so").read_bytes()[:6000])
    struct.pack_into("<Q", data, 40, 0)  # e_shoff and e_shnum 0: no section headers, so the segments are checked
    struct.pack_into("<H", data, 60, 0)
    (bundle / "model.so").write_bytes(bytes(data))
    _record(bundle, "model.so")
    _refused(_info(bundle), "model.so is damaged: a segment", "runs past the end of the file (6000 bytes)")


@pytest.mark.parametrize("how", ["parent", "absolute", "link"])
def test_a_model_library_outside_the_bundle_is_never_loaded(host_bundle, marker_library, tmp_path, how):
    bundle = _copy(host_bundle[1], tmp_path / "b")
    outside = shutil.copy(marker_library, tmp_path / "x.so")
    if how == "parent":
        _edit_description(bundle, lambda d: d.__setitem__("library", "../x.so"))
        expected = "model library '../x.so', which leads out of the bundle ('..')"
    elif how == "absolute":
        _edit_description(bundle, lambda d: d.__setitem__("library", str(outside)))
        expected = "an absolute path; it must lie inside the bundle"
    else:
        (bundle / "model.so").unlink()
        (bundle / "model.so").symlink_to(outside)
        _record(bundle, "model.so")
        expected = "'model.so', a link to"
    marker = tmp_path / "LOADED"
    _refused(_info(bundle, {"EDGECC_TEST_MARKER": str(marker)}), expected)
    assert not marker.exists()


def test_a_device_runtime_outside_the_bundle_is_never_loaded(host_bundle, marker_library, tmp_path):
    bundle = _copy(host_bundle[1], tmp_path / "b")
    shutil.copy(marker_library, tmp_path / "x.so")
    _edit_description(bundle, lambda d: d.__setitem__("device_runtime_libraries", ["lib/../../x.so"]))
    marker = tmp_path / "LOADED"
    _refused(_info(bundle, {"EDGECC_TEST_MARKER": str(marker)}), "device runtime 'lib/../../x.so'", "('..')")
    assert not marker.exists()


def test_an_unrecorded_library_inside_the_bundle_is_never_loaded(host_bundle, marker_library, tmp_path):
    bundle = _copy(host_bundle[1], tmp_path / "b")
    shutil.copy(marker_library, bundle / "lib" / "extra.so")
    _edit_description(bundle, lambda d: d.__setitem__("device_runtime_libraries", ["lib/extra.so"]))
    marker = tmp_path / "LOADED"
    _refused(_info(bundle, {"EDGECC_TEST_MARKER": str(marker)}), "records no size and SHA-256 for lib/extra.so")
    assert not marker.exists()


def test_a_cuda_runtime_given_as_a_path_is_refused(host_bundle, tmp_path):
    bundle = _copy(host_bundle[1], tmp_path / "b")
    _edit_description(bundle, lambda d: d.__setitem__("cuda", {"min_driver_version": 1, "runtime_library": "../x.so"}))
    _refused(_info(bundle), "cuda.runtime_library '../x.so' must be a library name")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[" * 100_000 + "]" * 100_000, "nests arrays or objects deeper than 32 levels"),
        ('{"format": "edgecc-bundle/1"}' + " " * (5 << 20), "more than the 4194304 a bundle's description may have"),
        (
            '{"format": "edgecc-bundle/1", "device": "cpu", "threads": 1, "inputs": [], "outputs": [],'
            ' "library": "model.so"}',
            "records no size and SHA-256 for model.so",
        ),
    ],
    ids=["deeply-nested", "oversized", "no-files-table"],
)
def test_a_malformed_model_json_is_one_line_not_a_crash(host_bundle, tmp_path, text, expected):
    bundle = _copy(host_bundle[1], tmp_path / "b")
    (bundle / "model.json").write_text(text)
    _refused(_info(bundle), expected)


def test_the_checked_bundle_still_runs(host_bundle):
    proc = _info(host_bundle[1])
    assert proc.returncode == 0 and "input  input_ids int64" in proc.stdout, proc.stderr


# ---- outputs: distinct names, written whole ---------------------------------------------------------------

TWO_OUTPUTS = ("y/1", "y_1")


def _two_output_bundle(root: Path, names: tuple[str, str]) -> Path:
    """y0 = x + 1 and y1 = 2 x, named `names`, compiled for this machine and deployed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import edgecc

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], [names[0]]), helper.make_node("Mul", ["x", "two"], [names[1]])],
        "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in names],
        [
            numpy_helper.from_array(np.ones((1, 4), np.float32), "one"),
            numpy_helper.from_array(np.full((1, 4), 2, np.float32), "two"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "two.onnx")
    edgecc.compile(root / "two.onnx", "host", root / "artifact", measure=False, log=quiet)
    edgecc.deploy(root / "artifact", root / "bundle", log=quiet)
    return root / "bundle"


@pytest.fixture(scope="module")
def two_output_bundle(tmp_path_factory) -> Path:
    return _two_output_bundle(tmp_path_factory.mktemp("two-outputs"), TWO_OUTPUTS)


X = np.arange(4, dtype=np.float32).reshape(1, 4)


def _run(bundle: Path, out: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    np.save(out.parent / "x.npy", X)

    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [str(bundle / "bin" / "edgecc-run"), "--input", f"x={out.parent / 'x.npy'}", "--output-dir", str(out)],
        capture_output=True,
        text=True,
        env={},
        preexec_fn=limit,
        timeout=120,
    )


def test_output_file_names_never_collide_and_give_the_name_back():
    from urllib.parse import unquote_to_bytes

    names = ["y/1", "y_1", "y%2F1", "y:1", ".hidden", "..", "%", "a b", "ü", "last_hidden_state", "logits.1"]
    files = [output_file_name(n) for n in names]
    assert len(set(files)) == len(names)
    assert output_file_name("y/1") == "y%2F1.npy" and output_file_name("logits.1") == "logits.1.npy"
    for name, file in zip(names, files):
        assert "/" not in file and not file.startswith(".")
        assert unquote_to_bytes(file.removesuffix(".npy")).decode() == name


def test_outputs_named_y_slash_1_and_y_1_are_both_kept(two_output_bundle, tmp_path):
    """Both were written to y_1.npy: one output silently lost."""
    run = run_bundle(two_output_bundle, {"x": X}, tmp_path / "run", env={})
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(run.outputs["y/1"], X + 1)
    np.testing.assert_array_equal(run.outputs["y_1"], X * 2)
    assert sorted(p.name for p in (tmp_path / "run" / "out").iterdir()) == ["y%2F1.npy", "y_1.npy"]


def test_outputs_replace_earlier_files_whole_and_leave_no_temporary_file(two_output_bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "y_1.npy", np.zeros(3, np.float32))
    proc = _run(two_output_bundle, out)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out / "y_1.npy"), X * 2)
    assert sorted(p.name for p in out.iterdir()) == ["y%2F1.npy", "y_1.npy"]
    assert oct((out / "y_1.npy").stat().st_mode & 0o777) != oct(0o600)  # a plain file's mode, not mkstemp's


def test_a_file_size_limit_leaves_earlier_outputs_whole(two_output_bundle, tmp_path):
    """Written in place, a RLIMIT_FSIZE cut left a truncated .npy (and SIGXFSZ killed the runner)."""
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "y_1.npy", np.zeros(3, np.float32))
    before = (out / "y_1.npy").read_bytes()
    proc = _run(two_output_bundle, out, limit_bytes=100)  # the .npy header alone is 128 bytes
    _refused(proc, f"cannot write an output to {out}: File too large (nothing was replaced)")
    assert (out / "y_1.npy").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["y_1.npy"]  # no temporary file, no partial output


def test_a_full_disk_leaves_earlier_outputs_whole(two_output_bundle, tmp_path):
    """Two pages of tmpfs in a private mount namespace: the earlier output fills one, the first new one
    the other, and the second new one finds no space."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces) to mount a small tmpfs")
    out = tmp_path / "full"
    out.mkdir()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "old.npy", np.zeros(3, np.float32))
    script = (
        f"mount -t tmpfs -o size=8k tmpfs {out} && cp {tmp_path / 'old.npy'} {out}/y_1.npy && "
        f"{two_output_bundle / 'bin' / 'edgecc-run'} --input x={tmp_path / 'x.npy'} --output-dir {out}; "
        f"echo rc=$?; ls -A {out}; sha256sum {out}/y_1.npy"
    )
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    _refused(subprocess.CompletedProcess([], 1, "", proc.stderr), "No space left on device (nothing was replaced)")
    old = hashlib.sha256((tmp_path / "old.npy").read_bytes()).hexdigest()
    assert proc.stdout.split() == ["rc=1", "y_1.npy", old, f"{out}/y_1.npy"], proc.stdout


def test_outputs_whose_names_differ_only_in_case_are_refused_before_running(tmp_path):
    bundle = _two_output_bundle(tmp_path, ("Y", "y"))
    out = tmp_path / "out"
    _refused(_run(bundle, out), "outputs 'Y' and 'y' differ only in letter case")
    assert not out.exists()


def _info_under_qemu(bundle: Path, sysroot: Path) -> subprocess.CompletedProcess:
    command = [shutil.which("qemu-aarch64-static"), "-L", str(sysroot), str(bundle / "bin" / "edgecc-run"), "--info"]
    return subprocess.run(command, capture_output=True, text=True, env={}, timeout=300)


@pytest.mark.toolchain("aarch64-linux-gnu-g++", "qemu-aarch64-static")
@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_aarch64_bundle_is_refused_under_qemu(pi5_bundle, tmp_path, damage):
    """The same checks in the aarch64 build of the runner (the truncated library was a SIGBUS there too)."""
    _, pi5, sysroot = pi5_bundle
    assert _info_under_qemu(pi5, sysroot).returncode == 0
    bundle = _copy(pi5, tmp_path / "b")
    data = bytearray((bundle / "model.so").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[4096:8192] = bytes(4096)
    (bundle / "model.so").write_bytes(bytes(data))
    _refused(_info_under_qemu(bundle, sysroot), "has " if damage == "truncated" else "does not match the SHA-256")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_thread_count_far_past_the_cores_is_one_line_not_a_hang(host_bundle, how):
    """1,000 threads on 2 cores had hung the runner; the bundle's own count stays as deployed."""
    runner = str(host_bundle[1] / "bin" / "edgecc-run")
    if how == "option":
        proc = subprocess.run(
            [runner, "--info", "--threads", "100000"], capture_output=True, text=True, env={}, timeout=60
        )
        source = "the threads option"
    else:
        env = {"TVM_NUM_THREADS": "100000"}
        proc = subprocess.run([runner, "--info"], capture_output=True, text=True, env=env, timeout=60)
        source = "TVM_NUM_THREADS"
    assert proc.returncode != 0 and proc.returncode < 128, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "100000 threads" in lines[0] and source in lines[0], proc.stderr
    cores = len(os.sched_getaffinity(0))
    ok = subprocess.run([runner, "--info", "--threads", str(cores)], capture_output=True, text=True, env={}, timeout=60)
    assert ok.returncode == 0 and f"{cores} threads" in ok.stdout, ok.stderr
