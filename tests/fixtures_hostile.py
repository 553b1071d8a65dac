"""For the hostile-input tests (tests/test_hostile_*.py): what every refusal must look like, a folder
snapshot to prove nothing was deleted, one small compiled artifact to attack, and a loopback server
to play a hostile peer (a board link, a tracker).

Every bad input must give: a non-zero exit, exactly one line on stderr and it starts with
"edgecc: error:", no traceback, no "internal error" (that is kept for real bugs), nothing the user
had deleted or changed, and no staging folder left behind.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> content hash ('dir' for folders, 'link -> target' for links) of everything under root."""
    root = Path(root)
    found = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            found[relative] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            found[relative] = "dir"
        else:
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def staging_left(root: Path) -> list[str]:
    return [str(p) for p in Path(root).rglob(".*") if ".staging-" in p.name or ".old-" in p.name]


def assert_refused(exit_code: int, stderr: str, *fragments: str, code: int | None = None) -> str:
    """The one clear line, and nothing else on stderr; returns that line."""
    assert exit_code != 0, f"expected a refusal, got exit 0; stderr: {stderr}"
    if code is not None:
        assert exit_code == code, (exit_code, stderr)
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("edgecc: error: "), line
    assert "internal error" not in line, line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


class LoopbackServer:
    """A listener on a free loopback port; each connection, accepted in turn on a daemon thread, goes to
    `handle` (which serves it there, or starts threads of its own). `close` ends the accepting."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self):
        self.listener.close()


def invoke(*args, cwd: Path | None = None):
    """`edgecc ARGS` in this process (click's runner); returns the click Result (stdout, stderr apart)."""
    from click.testing import CliRunner

    from edgecc.cli import main

    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, [str(a) for a in args])
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def program_env() -> dict[str, str]:
    """This environment, with this checkout's edgecc first on the path of a child Python."""
    return {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}


def edgecc_process(*args, cwd: Path, **popen) -> subprocess.Popen:
    """The real program (`python -m edgecc`, as the console script runs it) in a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgecc", *map(str, args)],
        cwd=cwd,
        env=program_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """bert-tiny-test (vocabulary 1000) exported at batch 1, 8 tokens, as an ONNX file."""
    from edgecc.frontend import export_builtin

    exported = export_builtin("bert-tiny-test", 1, 8, progress=lambda *_: None)
    path = tmp_path_factory.mktemp("hostile-model") / "tiny.onnx"
    path.write_bytes(exported.onnx_path.read_bytes())
    return path


@pytest.fixture(scope="session")
def tiny_artifact(tiny_model, tmp_path_factory) -> Path:
    """A compiled artifact of `tiny_model`; tests copy it before damaging it."""
    import edgecc

    out = tmp_path_factory.mktemp("hostile-artifact") / "tiny"
    edgecc.compile(tiny_model, "host", out, measure=False, log=lambda *_: None)
    return out
