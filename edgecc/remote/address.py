"""HOST:PORT parsing shared by RPC sessions and tuning runners."""

from __future__ import annotations

from edgecc.errors import RemoteError


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = (text or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RemoteError(f"bad address '{text}': expected HOST:PORT, e.g. 127.0.0.1:9190")
    return host, int(port)
