"""The output folder: -o replaces only an earlier artifact or an empty folder, refuses everything else
before any work, and no exit path (errors, SIGTERM, SIGHUP, SIGINT) leaves a staging folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_hostile import assert_refused, edgecc_process, invoke, program_env, snapshot, staging_left


@pytest.fixture
def project(tmp_path, tiny_model) -> Path:
    """A user's project folder: their model, their notes, a subfolder of their own."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    shutil.copy(tiny_model, root / "m.onnx")
    (root / "notes.txt").write_text("mine\n")
    (root / "src" / "train.py").write_text("print('mine')\n")
    return root


@pytest.mark.parametrize(
    "output, fragment",
    [
        ("{project}", "is the current folder"),
        (".", "is the current folder"),
        ("", "is the current folder"),
        ("..", "is a folder above the current one"),
        ("src/..", "is the current folder"),
        ("src", "is not an edgecc artifact"),
        ("notes.txt", "a file of that name exists"),
        ("m.onnx", "is the model being compiled"),
        ("{home}", "your home folder"),
        ("/", "the root folder"),
    ],
)
def test_output_folders_that_are_not_ours_are_refused_before_any_work(project, output, fragment):
    before = snapshot(project.parent)
    started = time.monotonic()
    result = invoke("compile", "m.onnx", "-o", output.format(project=project, home=Path.home()), "-q", cwd=project)
    assert_refused(result.exit_code, result.stderr, fragment, code=2)
    assert time.monotonic() - started < 10  # refused up front: no export, import or build ran
    assert snapshot(project.parent) == before and staging_left(project.parent) == []


def test_a_folder_holding_the_model_is_refused_from_elsewhere(project, tmp_path):
    before = snapshot(project)
    result = invoke("compile", project / "m.onnx", "-o", project, "-q", cwd=tmp_path)
    assert_refused(result.exit_code, result.stderr, "holds the model being compiled", code=2)
    assert snapshot(project) == before


def test_an_artifact_with_a_file_of_the_users_inside_is_not_replaced(project, tiny_artifact):
    out = project / "out"
    shutil.copytree(tiny_artifact, out)
    (out / "my-results.csv").write_text("a,b\n")
    before = snapshot(project)
    result = invoke("compile", "m.onnx", "-o", "out", "-q", cwd=project)
    assert_refused(result.exit_code, result.stderr, "also holds my-results.csv", code=2)
    assert snapshot(project) == before


def test_a_symlinked_output_folder_is_refused(project, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (project / "link").symlink_to(real)
    result = invoke("compile", "m.onnx", "-o", "link", "-q", cwd=project)
    assert_refused(result.exit_code, result.stderr, "is a symbolic link", code=2)


def test_empty_folder_and_earlier_artifact_are_replaced(project, tiny_artifact):
    (project / "empty").mkdir()
    assert invoke("compile", "m.onnx", "-o", "empty", "--no-measure", "-q", cwd=project).exit_code == 0
    assert json.loads((project / "empty" / "manifest.json").read_text())["format"].startswith("edgecc-artifact/")
    shutil.copytree(tiny_artifact, project / "old")
    stamp = (project / "old" / "manifest.json").stat().st_mtime_ns
    assert invoke("compile", "m.onnx", "-o", "old", "--no-measure", "-q", cwd=project).exit_code == 0
    assert (project / "old" / "manifest.json").stat().st_mtime_ns != stamp
    assert (project / "notes.txt").read_text() == "mine\n" and staging_left(project) == []


def test_leftovers_of_killed_runs_are_removed_by_the_next_compile_into_the_same_place(project):
    dead = 2**22 + 12345  # above the default pid_max: no process has this id
    for name in (f".out.staging-{dead}-abcd1234", f".out.old-{dead}-deadbeef", f".out.old-{dead}"):
        (project / name).mkdir()
        (project / name / "model.so").write_bytes(b"half")
    alive = project / f".out.staging-{os.getpid()}-live0000"  # a compile still running (this process)
    alive.mkdir()
    other = project / f".other.staging-{dead}-abcd1234"  # another output's leftover: not ours to judge here
    other.mkdir()
    assert invoke("compile", "m.onnx", "-o", "out", "--no-measure", "-q", cwd=project).exit_code == 0
    hidden = sorted(p.name for p in project.iterdir() if p.name.startswith("."))
    assert hidden == sorted([alive.name, other.name])


def _wait_for_staging(folder: Path, process, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if staging_left(folder):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("no staging folder appeared")


def default_signals() -> None:
    """In the child: the dispositions a user's terminal gives a program. A test run started in the
    background (its shell ignores SIGINT there) or under nohup (SIGHUP) would hand the child an
    ignored signal, which edgecc rightly keeps ignoring."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_compile_is_a_clean_exit_that_leaves_nothing(project, signum):
    """A real `edgecc compile` child process, signalled once its staging folder exists."""
    before = snapshot(project)
    # measured (2 s at least), so the compile is surely still running a second after its staging
    # folder appeared, on any CPU; the poll check below says so plainly if it ever is not
    process = edgecc_process("compile", "m.onnx", "-o", "out", cwd=project, preexec_fn=default_signals)
    _wait_for_staging(project, process)
    time.sleep(1.0)  # into the steps
    assert process.poll() is None, "the compile ended before the signal"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    errors = [line for line in stderr.splitlines() if line.startswith("edgecc: error:")]
    assert process.returncode == 128 + signum, stderr
    assert errors == [f"edgecc: error: stopped by {signal.Signals(signum).name} (anything half-written was removed)"]
    assert "Traceback" not in stderr
    assert staging_left(project) == [] and not (project / "out").exists()
    assert snapshot(project) == before


@pytest.mark.parametrize("delay", [0.8, 2.0])
def test_ctrl_c_in_the_first_seconds_prints_no_traceback(project, delay):
    """While the command's modules and TVM are still loading. (The interpreter's own start-up, the
    first ~0.1 s before any edgecc code runs, is Python's and cannot be covered.)"""
    process = edgecc_process("compile", "m.onnx", "-o", "out", "--no-measure", cwd=project, preexec_fn=default_signals)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    assert process.returncode == 130, stderr
    assert staging_left(project) == [] and not (project / "out").exists()


def test_a_reader_that_leaves_early_is_not_an_internal_error(tmp_path):
    """`edgecc targets | head -1`: the pipe closes after one line."""
    process = edgecc_process("targets", cwd=tmp_path)
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=60)
    assert first.strip() and "internal error" not in stderr and "Traceback" not in stderr
    assert process.returncode in (0, 141), stderr


# What onnxslim does while the compile imports the model: `import onnxruntime` inside a bare
# `except:`. Here the stop signal is delivered inside that window every time (twice: the second
# after the first was swallowed), so the test does not depend on hitting a 50 ms window by timing.
_SWALLOWING_LIBRARY = """
import os, signal, sys, time
import onnxslim

real_slim = onnxslim.slim
signums = [int(s) for s in sys.argv[1].split(",")]


def slim_that_swallows_signals(*args, **kwargs):
    for signum in signums:
        try:
            os.kill(os.getpid(), signum)
            time.sleep(0.2)  # the handler runs here, inside the library's bare except
        except:  # noqa: E722
            pass
    return real_slim(*args, **kwargs)


onnxslim.slim = slim_that_swallows_signals
sys.argv = ["edgecc", *sys.argv[2:]]
from edgecc.console import main

main()
"""


@pytest.mark.parametrize("signums", [[signal.SIGTERM], [signal.SIGINT], [signal.SIGINT, signal.SIGINT, signal.SIGTERM]])
def test_a_signal_a_library_swallows_still_stops_the_compile(project, signums):
    before = snapshot(project)
    script = project.parent / "swallowing.py"
    script.write_text(_SWALLOWING_LIBRARY)
    process = subprocess.run(
        [sys.executable, str(script), ",".join(map(str, signums)), "compile", "m.onnx", "-o", "out", "--no-measure"],
        cwd=project,
        env=program_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=default_signals,
    )
    first = signal.Signals(signums[0])
    assert process.returncode == 128 + first, process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("edgecc: error:")]
    assert errors == [f"edgecc: error: stopped by {first.name} (anything half-written was removed)"]
    assert "Traceback" not in process.stderr
    assert "[5/" not in process.stdout, "the compile ran on past the step the signal came in"
    assert staging_left(project) == [] and not (project / "out").exists()
    assert snapshot(project) == {**before}


@pytest.fixture
def stop_handlers():
    """edgecc's handlers in this process for one test, then the earlier dispositions and a clean record."""
    from edgecc import interrupts

    earlier = {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS}
    for signum in interrupts.SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    depth = interrupts._deferring[0]
    interrupts._deferring[0] = 0
    interrupts.install()
    yield interrupts
    for signum, handler in earlier.items():
        signal.signal(signum, handler)
    interrupts.forget()
    interrupts._deferring[0] = depth


@pytest.mark.fast
def test_after_a_swallowed_signal_the_next_one_still_stops(stop_handlers):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    except:  # noqa: E722 - what onnxslim does around `import onnxruntime`
        pass
    assert stop_handlers.received().signum == signal.SIGINT
    for signum in stop_handlers.SIGNALS:  # never left ignored while the command's code runs
        assert signal.getsignal(signum) is not signal.SIG_IGN
    with pytest.raises(stop_handlers.Stopped) as raised:
        stop_handlers.check()  # what the pipeline does between steps
    assert raised.value.exit_code == 128 + signal.SIGINT
    with pytest.raises(stop_handlers.Stopped) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert raised.value.signum == signal.SIGTERM


@pytest.mark.fast
def test_a_repeated_signal_waits_for_the_cleanup(stop_handlers):
    finished = []
    with stop_handlers.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        finished.append(True)
    assert finished == [True]
    assert stop_handlers.received().signum == signal.SIGTERM
