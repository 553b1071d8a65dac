"""Energy measured on the board that runs the model: probes registered in the board-side RPC server.

Board side: call `register_board_probes()` in the server process before serving.
Host side: `RemoteMeter(session)` drives those probes through the RPC session.
"""

from __future__ import annotations

import json

from edgecc.measure.energy.base import EnergySample, Meter

START, STOP, NAME = "edgecc.energy.start", "edgecc.energy.stop", "edgecc.energy.meter"


def register_board_probes(root: str = "/") -> str:
    """Register the probes; returns the meter's name ('' when the board has none)."""
    import tvm

    from edgecc.measure.energy.detect import detect_meter

    meter = detect_meter(root)

    def name() -> str:
        return "" if meter is None else meter.name

    def start() -> str:
        if meter is None:
            return ""
        meter.start()
        return meter.name

    def stop() -> str:
        return json.dumps(meter.stop().to_dict()) if meter is not None else ""

    tvm.register_global_func(NAME, name, override=True)
    tvm.register_global_func(START, start, override=True)
    tvm.register_global_func(STOP, stop, override=True)
    return name()


def remote_meter(session) -> RemoteMeter | None:
    """The board's meter over RPC, or None when the server has no probes or no meter."""
    try:
        name = session.get_function(NAME)()
    except Exception:  # noqa: BLE001 - server without edgecc probes
        return None
    return RemoteMeter(session, name) if name else None


class RemoteMeter(Meter):
    def __init__(self, session, name: str):
        self.name = f"{name} (on board)"
        self._start, self._stop = session.get_function(START), session.get_function(STOP)

    def start(self) -> None:
        self._start()

    def stop(self) -> EnergySample:
        return EnergySample(**json.loads(self._stop()))
