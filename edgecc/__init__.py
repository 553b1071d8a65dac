"""edgecc: compile transformer models for edge devices with Apache TVM Relax.

import edgecc
result = edgecc.compile("tinybert-4", target="host")
outputs = edgecc.run(result.artifact_dir, inputs)
"""

from __future__ import annotations

__version__ = "0.1.0"

from edgecc.threads import size_tvm_thread_pool

size_tvm_thread_pool()  # before anything can start TVM's thread pool

from edgecc.api import bench, compare, compile, deploy, report, run, tune  # noqa: E402
from edgecc.errors import EdgeccError  # noqa: E402

__all__ = ["compile", "tune", "run", "bench", "compare", "report", "deploy", "EdgeccError", "__version__"]
