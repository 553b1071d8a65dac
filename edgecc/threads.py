"""How many threads edgecc runs TVM kernels (and ONNX Runtime, for comparison) with on this machine."""

from __future__ import annotations

import os


def host_threads() -> int:
    """Physical cores this process may run on (hyper-threads of one core add little to dense math)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or allowed
    except ImportError:
        physical = allowed
    return max(1, min(allowed, physical))


def size_tvm_thread_pool() -> None:
    """Give TVM's thread pool `host_threads()` threads unless TVM_NUM_THREADS already says how many.

    TVM sizes its pool as half the logical CPUs on x86, assuming every core has two hyper-threads.
    On a VM whose vCPUs are whole cores that ran every kernel on one core of two while ONNX Runtime
    used both (MiniLM's attention kernel at seq 1024: 5.2 ms on one thread, 2.6 ms on two). Set
    before TVM first starts the pool, which reads the variable once.
    """
    os.environ.setdefault("TVM_NUM_THREADS", str(host_threads()))
