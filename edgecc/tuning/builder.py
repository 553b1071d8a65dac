"""A MetaSchedule builder that works on a small machine.

TVM's LocalBuilder starts a fresh worker pool for every batch and each worker imports
`tvm.s_tir.tensor_intrin` (50-60 s on a 2-core machine) inside a 30 s build timeout, so every
candidate fails. Here candidates are built in the tuning process itself, where TVM is already
imported: about half a second each, and no import is ever paid twice.
"""

from __future__ import annotations

import os
import tempfile

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder


def build_candidate(mod, target) -> str:
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.support.tar import tar

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    library = tvm_build(mod, target=target)
    path = os.path.join(tempfile.mkdtemp(prefix="edgecc-candidate-"), "candidate." + tar.output_format)
    library.export_library(path, fcompile=tar)
    return path


@derived_object
class InProcessBuilder(PyBuilder):
    def __init__(self):
        super().__init__()
        self.built = 0
        self.failed = 0

    def build(self, build_inputs):
        results = []
        for build_input in build_inputs:
            try:
                path = build_candidate(build_input.mod, build_input.target)
                results.append(BuilderResult(path, None))
                self.built += 1
            except Exception as exc:  # a bad candidate fails alone; the search goes on
                results.append(BuilderResult(None, f"{type(exc).__name__}: {str(exc)[:500]}"))
                self.failed += 1
        return results
