from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecc.remote.board.server import free_port, stop_process_group


@pytest.fixture(scope="session")
def dense_onnx(tmp_path_factory) -> Path:
    """y = x @ W + b: one kernel, so a tuning run of a few trials reaches it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 48)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal((48,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"], name="dense"),
            helper.make_node("Add", ["xw", "b"], ["y"], name="bias"),
        ],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 48])],
        initializer=[weight, bias],
    )
    path = tmp_path_factory.mktemp("tuning") / "dense.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="session")
def tuned_dense(dense_onnx, tmp_path_factory):
    """A real tuning run (16 trials) whose log later tests reuse."""
    import edgecc

    logs = tmp_path_factory.mktemp("tuning_logs")
    result = edgecc.compile(
        dense_onnx,
        "host",
        logs.parent / "tuned-dense",
        tune=True,
        trials=16,
        tuning_logs=(logs,),
        min_seconds=0.2,
        log=lambda *_: None,
    )
    return result, logs


@pytest.fixture(scope="session")
def lowered_matmul():
    """relu(x @ W) for x: 32x64, lowered to one unscheduled PrimFunc, as the pipeline hands it to tuning."""
    import tvm
    from tvm import relax

    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((32, 64), "float32"))
    weight = relax.const(np.random.default_rng(0).standard_normal((64, 48)).astype("float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            y = builder.emit(relax.op.matmul(x, weight))
            out = builder.emit_output(relax.op.nn.relu(y))
        builder.emit_func_output(out)
    passes = tvm.transform.Sequential(
        [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    return passes(builder.get())


def wait_listening(port: int, process, seconds: float = 60) -> None:
    """Until something accepts connections on 127.0.0.1:`port`; fails when `process` exits first."""
    import socket
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port} after {seconds} s")


def start_rpc_server(port: int, *extra: str):
    """TVM's own RPC server on 127.0.0.1:`port` in a process group of its own (it serves sessions in
    worker processes: `stop_process_group` ends them all); `extra`: e.g. --tracker ADDRESS --key K."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--port-end", str(port + 1), *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="session")
def rpc_tracker_with_board():
    """A real TVM RPC tracker and one x86 RPC server registered under key 'x86-test' on 127.0.0.1."""
    import subprocess
    import sys
    import time

    from edgecc.remote.session import tracker_free_count

    tracker_port, server_port = free_port(), free_port()
    tracker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tvm.exec.rpc_tracker",
            "--host",
            "127.0.0.1",
            "--port",
            str(tracker_port),
            "--port-end",
            str(tracker_port + 1),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = None
    try:
        wait_listening(tracker_port, tracker)
        tracker_address = f"127.0.0.1:{tracker_port}"
        server = start_rpc_server(server_port, "--tracker", tracker_address, "--key", "x86-test")
        deadline = time.time() + 60
        while tracker_free_count(tracker_address, "x86-test") < 1:
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("the RPC server never registered with the tracker")
            time.sleep(0.3)
        yield {"tracker": tracker_address, "key": "x86-test", "server": f"127.0.0.1:{server_port}"}
    finally:
        for process in (server, tracker):
            if process is not None:
                stop_process_group(process)


@pytest.fixture(scope="session")
def rpc_board():
    """A standalone x86 TVM RPC server on 127.0.0.1 (no tracker): the --rpc HOST:PORT path."""
    port = free_port()
    server = start_rpc_server(port)
    try:
        wait_listening(port, server)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process_group(server)
