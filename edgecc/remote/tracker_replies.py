"""What a TVM RPC tracker answers, checked before it is used: a tracker is another machine's program,
and a reply of `null`, `{}`, or a list of the wrong things is one clear line naming the tracker, not
an internal error (the protocol: tvm/python/tvm/rpc/tracker.py, replies `[TrackerCode, value]`)."""

from __future__ import annotations

import json

from edgecc.errors import RemoteError

SUCCESS = 0  # tvm.rpc.base.TrackerCode.SUCCESS
MAX_REPLY_BYTES = 1 << 20  # a summary of a few hundred boards is a few KB


def _shown(reply) -> str:
    try:
        text = json.dumps(reply)
    except RecursionError:  # only the outer levels are ever looked at; a value this deep is just named
        return "a value nested hundreds of levels deep"
    return text if len(text) <= 120 else text[:117] + "..."


def parse_reply(body: bytes, tracker: str):
    """A reply's JSON (only its outer levels are read, so any depth the parser takes is harmless)."""
    try:
        return json.loads(body.decode())
    except UnicodeDecodeError:
        raise RemoteError(f"tracker {tracker} sent a reply that is not text") from None
    except json.JSONDecodeError as exc:
        raise RemoteError(f"tracker {tracker} sent a reply that is not JSON ({exc.msg})") from None
    except RecursionError:
        raise RemoteError(f"tracker {tracker} sent a reply nested too deep to read") from None


def check_reply_size(size: int, tracker: str) -> int:
    if not 0 < size <= MAX_REPLY_BYTES:
        raise RemoteError(
            f"tracker {tracker} announced a reply of {size} bytes (a tracker's replies are 1 byte to "
            f"{MAX_REPLY_BYTES >> 20} MiB); is it a TVM RPC tracker?"
        )
    return size


def _value(reply, tracker: str, what: str, refused: str):
    if not isinstance(reply, list) or len(reply) != 2 or isinstance(reply[0], bool) or not isinstance(reply[0], int):
        raise RemoteError(f"tracker {tracker} gave an unexpected answer to {what}: {_shown(reply)}")
    if reply[0] != SUCCESS:
        raise RemoteError(f"tracker {tracker} {refused}: {_shown(reply)}")
    return reply[1]


def summary_from_reply(reply, tracker: str) -> dict:
    """The summary: {'server_info': [...], 'queue_info': {key: {'free': n, 'pending': n}}}."""
    summary = _value(reply, tracker, "a summary request", "refused a summary request")
    queues = summary.get("queue_info") if isinstance(summary, dict) else None
    if not isinstance(queues, dict) or not all(isinstance(q, dict) for q in queues.values()):
        raise RemoteError(f"tracker {tracker} gave a summary without its queues: {_shown(summary)}")
    return summary


def free_boards(summary: dict, key: str, tracker: str) -> int:
    free = summary["queue_info"].get(key, {}).get("free", 0)
    if isinstance(free, bool) or not isinstance(free, int) or free < 0:
        raise RemoteError(f"tracker {tracker} counts {_shown(free)} free boards under key '{key}'")
    return free


def board_from_reply(reply, tracker: str, key: str) -> tuple[str, int, str]:
    """(host, port, match key) of the board the tracker gave for `key`."""
    board = _value(reply, tracker, f"the request for key '{key}'", f"refused the request for key '{key}'")
    if not (
        isinstance(board, list)
        and len(board) == 3
        and isinstance(board[0], str)
        and board[0]
        and isinstance(board[1], int)
        and not isinstance(board[1], bool)
        and 0 < board[1] < 65536
        and isinstance(board[2], str)
    ):
        raise RemoteError(
            f"tracker {tracker} answered the request for key '{key}' with {_shown(board)}, "
            "not a board's [host, port, key]"
        )
    return board[0], board[1], board[2]
