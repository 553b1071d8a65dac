"""An emulated aarch64 board: a cached aarch64 Python + TVM run under QEMU user-mode, serving TVM RPC."""

from .setup import board_root, ensure_board, BoardPaths
from .server import EmulatedBoard, start_board  # noqa: E402

__all__ = ["board_root", "ensure_board", "BoardPaths", "EmulatedBoard", "start_board"]
