"""Deploy without Python: a bundle per target (model, TVM runtime libraries, a C API, an example program).

`edgecc.deploy(artifact, output)` / `edgecc deploy ARTIFACT -o BUNDLE`; see write.py for the layout
and runtime_src/edgecc_model.h for the C API.
"""

from __future__ import annotations

from edgecc.bundle.write import DeployResult, deploy

__all__ = ["deploy", "DeployResult"]
