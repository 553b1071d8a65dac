"""The Python that runs on the emulated board (under QEMU): its sitecustomize and its server's main.

Kept as source text here because it runs in the board's aarch64 interpreter, which has TVM's runtime
and numpy but not edgecc.
"""

from __future__ import annotations

EMULATED_ENV = "EDGECC_EMULATED_BOARD"
EMULATED_FUNC = "edgecc.board.emulated"

RANDOM_FILL_FUNC = "tvm.contrib.random.random_fill_for_measure"
SESSION_DIED = "edgecc-board: session"  # how the board's server reports a session whose worker died

# Runs inside every interpreter of the board (server and its workers): it marks the board as
# emulated through a remote global function, so hosts can label timings taken on it. It also holds
# `edgecc_board_init`, which the server's listening process runs once (see BOOT).
SITECUSTOMIZE = f'''\
import os
if os.environ.get("{EMULATED_ENV}"):
    try:
        import tvm_ffi
        tvm_ffi.register_global_func("{EMULATED_FUNC}", lambda: os.environ["{EMULATED_ENV}"], override=True)
    except Exception:
        pass
'''

# Without binfmt_misc, an aarch64 process cannot exec an aarch64 binary; the RPC server starts
# helpers with sys.executable, so point it at an x86 script that goes through QEMU again.
# If whatever started us dies without stopping us (a killed pytest, a closed terminal), end the whole
# process group instead of lingering as an orphan that holds the port.
PARENT_WATCH = """\
import os, signal, threading, time
def _edgecc_watch_parent(parent=os.getppid()):
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(0, signal.SIGKILL)
threading.Thread(target=_edgecc_watch_parent, daemon=True).start()
"""

# `edgecc_board_init` runs in the server's listening process (TVM starts it through its popen pool,
# a fresh interpreter, and calls `server_init_callback` there); session workers are forked from it.
# 1. TVM's server serves each session in a worker process and raises when that worker exits badly (a
#    library that segfaults on the board): the exception ended the listening thread while the
#    listening socket stayed open, so the next client connected and then waited forever for a
#    handshake, and the server process looked alive. Now a session whose worker died is logged
#    (SESSION_DIED, which `board emulate` prints) and the loop goes on serving.
# 2. MetaSchedule's RPC runner fills measurement arguments with RANDOM_FILL_FUNC, which is part of
#    TVM's compiler library: a board with the runtime library only lacks it, so every tuning trial on
#    the board failed. It is registered here (after TVM's own libraries loaded, and only when missing,
#    so a board with the full TVM keeps its own): random values written through the tensor's data
#    pointer (RPC passes a view of the board-side DLTensor, which has no owning handle for DLPack).
BOARD_INIT = """
def _edgecc_random_fill(tensor):
    import ctypes
    import numpy as np
    try:
        dtype = np.dtype(str(tensor.dtype))
    except TypeError:
        return  # a dtype numpy lacks (bfloat16): the kernel is timed on whatever the memory holds
    if tensor.__dlpack_device__()[0] != 1 or not tensor.is_contiguous():
        return  # CPU tensors only, which is what these boards have
    count = tensor.numel()
    view = np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(tensor.data_ptr()),
                         dtype=dtype, count=count)
    rng = np.random.default_rng()
    if dtype.kind == "f":
        view[...] = rng.uniform(-1.0, 1.0, count).astype(dtype)
    elif dtype.kind in "iu":
        view[...] = rng.integers(0, 8, count).astype(dtype)
    elif dtype.kind == "b":
        view[...] = rng.integers(0, 2, count).astype(bool)


def edgecc_board_init():
    import logging, os
    import tvm_ffi
    import tvm.rpc.server as server
    if tvm_ffi.get_global_func("RANDOM_FILL_FUNC", allow_missing=True) is None:
        tvm_ffi.register_global_func("RANDOM_FILL_FUNC", _edgecc_random_fill)
    serving = server._serving
    def survive(sock, addr, opts, load_library):
        cwd = os.getcwd()
        try:
            serving(sock, addr, opts, load_library)
        except RuntimeError as exc:
            logging.getLogger("RPCServer").warning(
                "SESSION_DIED from %s ended: its worker died (%s); still serving", addr, exc)
            os.chdir(cwd)
            try:
                sock.close()
            except OSError:
                pass
    server._serving = survive
""".replace("SESSION_DIED", SESSION_DIED).replace("RANDOM_FILL_FUNC", RANDOM_FILL_FUNC)

SITECUSTOMIZE += BOARD_INIT

BOOT = (
    PARENT_WATCH
    + """\
import argparse, logging, multiprocessing, sys
sys.executable = sys.argv[1]
multiprocessing.set_executable(sys.argv[1])
parser = argparse.ArgumentParser()
for name in ("--host", "--tracker", "--key", "--custom-addr"):
    parser.add_argument(name)
parser.add_argument("--port", type=int)
parser.add_argument("--port-end", type=int)
args = parser.parse_args(sys.argv[2:])
logging.basicConfig(level=logging.INFO)
import sitecustomize
from tvm import rpc
tracker = None
if args.tracker:
    url, port = args.tracker.rsplit(":", 1)
    tracker = (url, int(port))
server = rpc.Server(args.host, args.port, args.port_end, key=args.key or "", tracker_addr=tracker,
                    custom_addr=args.custom_addr, server_init_callback=sitecustomize.edgecc_board_init)
server.proc.join()
"""
)
