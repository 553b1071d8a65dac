"""Where candidates are measured: in a local worker, or on a board through RPC (direct or tracker).

A board that drops out is asked again a few times; if it stays away, that candidate's measurement
fails with the reason and the search goes on: the tuning run itself never dies of it.
"""

from __future__ import annotations

import functools
import time

SESSION_ATTEMPTS = 3
RETRY_PAUSE_S = 2.0


def create_session(rpc, tracker, key, timeout, attempts, pause_s, rpc_config=None):
    """Runs in the runner's worker process (importable by name, so it pickles as a reference);
    `rpc_config` is MetaSchedule's, unused: the session spec is bound in with functools.partial."""
    from edgecc.errors import RemoteError
    from edgecc.remote.session import open_session

    for attempt in range(1, attempts + 1):
        try:
            return open_session(rpc=rpc, tracker=tracker, key=key, timeout=timeout)
        except RemoteError as exc:
            if attempt == attempts:
                raise RuntimeError(f"board unreachable after {attempts} attempts: {exc}") from None
            time.sleep(pause_s * attempt)


def make_runner(session: dict | None):
    """LocalRunner for None; an RPCRunner opening sessions like `edgecc.remote.open_session` otherwise."""
    from tvm.s_tir import meta_schedule as ms

    if not session:
        return ms.runner.LocalRunner(timeout_sec=60)
    from edgecc.errors import RemoteError

    rpc, tracker, key = session.get("rpc"), session.get("tracker"), session.get("key")
    timeout = float(session.get("timeout") or 120)
    attempts = int(session.get("attempts") or SESSION_ATTEMPTS)
    pause_s = float(session.get("retry_pause_s", RETRY_PAUSE_S))
    if bool(rpc) == bool(tracker):
        raise RemoteError("tuning on a board: pass either --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
    if tracker and not key:
        raise RemoteError(f"--tracker {tracker} needs --key KEY naming the kind of board to request")
    from edgecc.remote.address import parse_address

    host, port = parse_address(rpc or tracker)  # a bad address fails now, with one line, not per candidate
    # RPCConfig only passes its sanity check and sets the future's timeout; sessions come from create_session.
    config = ms.runner.RPCConfig(
        tracker_host=host, tracker_port=port, tracker_key=key or "-", session_timeout_sec=int(timeout * (attempts + 1))
    )
    return ms.runner.RPCRunner(
        rpc_config=config,
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50),
        f_create_session=functools.partial(create_session, rpc, tracker, key, timeout, attempts, pause_s),
        max_workers=1,
    )
