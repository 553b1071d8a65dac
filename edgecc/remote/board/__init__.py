"""An emulated aarch64 board: a cached aarch64 Python + TVM run under QEMU user-mode, serving TVM RPC."""

from edgecc.remote.board.server import EmulatedBoard, start_board  # noqa: E402
from edgecc.remote.board.setup import BoardPaths, board_root, ensure_board

__all__ = ["board_root", "ensure_board", "BoardPaths", "EmulatedBoard", "start_board"]
