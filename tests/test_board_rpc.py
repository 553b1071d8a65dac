"""A cross-compiled aarch64 library runs on the emulated board over RPC and through a tracker."""

import numpy as np
import pytest
from click.testing import CliRunner

from edgecc.remote.session import emulation_of, is_emulated, load_remote_module, open_session

pytestmark = pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-gcc")


@pytest.fixture(scope="module")
def aarch64_library(tmp_path_factory):
    import tvm
    from tvm import relax
    from tvm.script import relax as R

    from edgecc.targets import load_target

    @tvm.script.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((4, 8), "float32"), w: R.Tensor((8, 3), "float32")) -> R.Tensor((4, 3), "float32"):
            with R.dataflow():
                y = R.nn.relu(R.matmul(x, w))
                R.output(y)
            return y

    executable = relax.build(Module, load_target("raspberry-pi-5").tvm())
    path = tmp_path_factory.mktemp("aarch64") / "matmul_relu.so"
    executable.export_library(str(path), fcompile=tvm.support.cc.cross_compiler("aarch64-linux-gnu-gcc"))
    return path


def _run_remotely(session, library):
    import tvm
    from tvm import relax

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 8), dtype=np.float32), rng.standard_normal((8, 3), dtype=np.float32)
    device = session.cpu(0)
    vm = relax.VirtualMachine(load_remote_module(session, library), device)
    y = vm["main"](tvm.runtime.tensor(x, device), tvm.runtime.tensor(w, device)).numpy()
    np.testing.assert_allclose(y, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


def test_library_runs_on_emulated_board(aarch64_library, emulated_board):
    assert aarch64_library.read_bytes()[18] == 0xB7  # ELF e_machine: AArch64, so it cannot run on this host
    session = open_session(rpc=emulated_board.address, timeout=60)
    assert is_emulated(session) and emulation_of(session) == "qemu-aarch64"
    _run_remotely(session, aarch64_library)


def test_library_runs_through_tracker(aarch64_library, board_tracker):
    tracker, key = board_tracker
    session = open_session(tracker=tracker, key=key, timeout=60)
    assert is_emulated(session)
    _run_remotely(session, aarch64_library)


def test_host_session_is_not_emulated():
    from tvm import rpc

    assert not is_emulated(rpc.LocalSession())


def test_board_setup_command_is_idempotent():
    from edgecc.cli import main as cli

    result = CliRunner().invoke(cli, ["board", "setup"])
    assert result.exit_code == 0, result.output
    assert "cached at" in result.output and "board ready" in result.output


def test_emulate_refuses_a_busy_port(emulated_board):
    from edgecc.cli import main as cli

    result = CliRunner().invoke(cli, ["board", "emulate", "--port", str(emulated_board.port)])
    assert result.exit_code != 0
    assert f"127.0.0.1:{emulated_board.port}: the port is in use" in result.output


def test_session_timeout_ends_a_session_with_a_clear_error(aarch64_library, emulated_board):
    import time

    from edgecc.errors import RemoteError
    from edgecc.remote.session import board_failures

    session = open_session(rpc=emulated_board.address, timeout=3)
    time.sleep(5)  # the board ends sessions that outlive the timeout, as it would a hung one
    with pytest.raises(
        RemoteError, match=f"board {emulated_board.address} failed while loading: the session timeout ran out"
    ):
        with board_failures(emulated_board.address, "loading"):
            load_remote_module_raw(session, aarch64_library)
    # The board itself keeps serving new sessions.
    _run_remotely(open_session(rpc=emulated_board.address, timeout=60), aarch64_library)


def load_remote_module_raw(session, library):
    session.upload(str(library))
    return session.load_module(library.name)
