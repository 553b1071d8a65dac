"""A MetaSchedule builder that works on a small machine.

TVM's LocalBuilder starts a fresh worker pool for every batch and each worker imports
`tvm.s_tir.tensor_intrin` (50-60 s on a 2-core machine) inside a 30 s build timeout, so every
candidate fails. Here candidates are built in the tuning process itself, where TVM is already
imported: well under a second each, and no import is ever paid twice.
"""

from __future__ import annotations

import os
import tempfile

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder


def shared_library_compiler(target):
    """For candidates measured on a board: a finished .so (the board may have no compiler), linked
    with the target's cross toolchain when it has one."""
    from tvm.support import cc

    if target.toolchain is not None and "mtriple" in target.tvm_target:
        return cc.cross_compiler(target.toolchain.require()), "so"
    return cc.create_shared, "so"


def build_candidate(mod, target, fcompile=None, extension=None, work_dir=None) -> str:
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.support.tar import tar
    from tvm.tirx import build as tirx_build

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    library = tirx_build(mod, target=target)
    fcompile, extension = (fcompile, extension) if fcompile else (tar, tar.output_format)
    path = os.path.join(tempfile.mkdtemp(prefix="candidate-", dir=work_dir), "candidate." + extension)
    library.export_library(path, fcompile=fcompile)
    return path


@derived_object
class InProcessBuilder(PyBuilder):
    def __init__(self, work_dir, fcompile=None, extension=None, before_batch=None):
        super().__init__()
        self.work_dir, self.fcompile, self.extension = work_dir, fcompile, extension
        self.before_batch = before_batch  # called with the batch size before each batch
        self.built = 0
        self.failed = 0

    def build(self, build_inputs):
        if self.before_batch is not None:
            self.before_batch(len(build_inputs))  # may raise to end the search (time budget)
        results = []
        for build_input in build_inputs:
            try:
                path = build_candidate(
                    build_input.mod, build_input.target, self.fcompile, self.extension, self.work_dir
                )
                results.append(BuilderResult(path, None))
                self.built += 1
            except Exception as exc:  # noqa: BLE001 - a bad candidate fails alone; the search goes on
                results.append(BuilderResult(None, f"{type(exc).__name__}: {str(exc)[:500]}"))
                self.failed += 1
        return results
