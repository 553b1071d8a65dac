"""The board-side energy probes over a real TVM RPC server on 127.0.0.1, reading a recorded RAPL tree."""

import functools
import shutil
import time
from pathlib import Path

import pytest

tvm = pytest.importorskip("tvm")
from tvm import rpc  # noqa: E402

from edgecc.measure.energy.remote import register_board_probes, remote_meter  # noqa: E402
from edgecc.remote.board.server import free_port  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "energy"


def test_probes_registered_in_the_server_measure_on_the_board(tmp_path):
    root = tmp_path / "board"
    shutil.copytree(FIXTURES / "rapl", root)
    port = free_port()
    # what edgecc's board-side server must do: register the probes in the server process before serving
    server = rpc.Server(
        "127.0.0.1",
        port=port,
        port_end=port + 1,
        silent=True,
        server_init_callback=functools.partial(register_board_probes, str(root)),
    )
    try:
        session = rpc.connect("127.0.0.1", server.port, session_timeout=30)
        meter = remote_meter(session)
        assert meter is not None and meter.name == "rapl (on board)"
        counter = root / "sys/class/powercap/intel-rapl:0/energy_uj"
        meter.start()
        time.sleep(0.3)
        counter.write_text(str(int(counter.read_text()) + 2_000_000))  # the package used 2 J on the "board"
        time.sleep(0.3)
        sample = meter.stop()
        assert sample.joules == pytest.approx(2.0)
        assert sample.meter == "rapl" and sample.seconds > 0.5
    finally:
        server.terminate()


def test_server_without_probes_gives_no_meter():
    port = free_port()
    server = rpc.Server("127.0.0.1", port=port, port_end=port + 1, silent=True)
    try:
        assert remote_meter(rpc.connect("127.0.0.1", server.port, session_timeout=30)) is None
    finally:
        server.terminate()
