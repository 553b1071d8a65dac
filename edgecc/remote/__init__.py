"""Boards over TVM RPC: sessions (direct or through a tracker), the emulated aarch64 board, a tracker."""
