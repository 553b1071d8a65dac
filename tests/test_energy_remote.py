"""Energy read on the board side: a real TVM RPC server on 127.0.0.1 with edgecc's probes registered,
its meter pointed at a recorded AMD energy hwmon tree."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecc.measure.energy.remote import remote_meter
from edgecc.remote.board.server import free_port

from fixtures_tuning import wait_listening

FIXTURES = Path(__file__).parent / "fixtures" / "energy"


@pytest.fixture
def board(tmp_path):
    root = tmp_path / "amd"
    shutil.copytree(FIXTURES / "amd", root)
    port = free_port()
    env = {**os.environ, "EDGECC_ENERGY_ROOT": str(root)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgecc.measure.energy.board_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    wait_listening(port, proc)
    try:
        yield root, port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_remote_meter_reads_the_board_counters(board):
    from tvm import rpc

    root, port = board
    session = rpc.connect("127.0.0.1", port)
    meter = remote_meter(session)
    assert meter is not None and meter.name == "amd_energy (on board)"
    counter = root / "sys/class/hwmon/hwmon2/energy17_input"
    meter.start()
    time.sleep(0.2)
    tmp = counter.with_suffix(".tmp")
    tmp.write_text("52000000\n")  # +2 J on the board's socket counter
    tmp.replace(counter)
    time.sleep(0.2)
    sample = meter.stop()
    assert sample.joules == pytest.approx(2.0)
    assert sample.rails == ["Esocket0"] and sample.samples >= 3


def test_server_without_probes_gives_no_meter():
    from tvm import rpc

    port = free_port()
    server = rpc.Server(host="127.0.0.1", port=port, port_end=port + 1)
    try:
        assert remote_meter(rpc.connect("127.0.0.1", server.port)) is None
    finally:
        server.terminate()
