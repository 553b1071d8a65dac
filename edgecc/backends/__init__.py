"""The backend table: the one place where target kinds differ.

Each entry says how to give unscheduled kernels a default schedule, how to turn a lowered Relax
module into an executable, how to package that executable into deployable files, and how a
packaged artifact is loaded. Everything a board adds on top (CPU, toolchain, capabilities) comes
from its target file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgecc.errors import TargetError


@dataclass
class PackagedLibrary:
    """What `package` wrote into the artifact folder, for the manifest."""

    library: str  # file name of the loadable library, relative to the artifact folder
    files: list[str] = field(default_factory=list)  # every file written, library included
    contents: dict = field(default_factory=dict)  # what the library holds (arch, device code, ...)
    load: str = ""  # how a user loads it on the board, one paragraph
    loadable: bool = True  # False when a final step (link, SDK) must happen elsewhere
    missing: list[str] = field(default_factory=list)  # what is missing to run it, when not loadable


@dataclass
class Built:
    """What `build` made: the executable, and facts about how (e.g. the nvcc that compiled it)."""

    executable: object  # tvm.relax.Executable
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Backend:
    kind: str
    # (IRModule, Target) -> IRModule: default schedules for kernels that tuning did not cover.
    default_schedule: Callable
    # (IRModule, Target) -> Built
    build: Callable
    # (Built, Target, Path) -> PackagedLibrary
    package: Callable
    # device type name on the machine that runs the library ("cpu", "cuda", "metal", "hexagon")
    device: str
    # kernels are CPU loop nests: graph passes may build pre-scheduled CPU kernels (fused attention)
    cpu_kernels: bool = False
    # kernels are scheduled by the CPU rules (edgecc/schedules), whose convolutions want NHWC:
    # the graph's convolutions are converted (passes/convert_convs_to_nhwc.py)
    nhwc_convs: bool = False
    # (PrimFunc, name, Target, constant input positions) -> traced Schedule or None: one kernel's
    # default schedule, which tuning measures first and must beat (edgecc/tuning/default_baseline.py)
    kernel_schedule: Callable | None = None


_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    _BACKENDS[backend.kind] = backend
    return backend


def backend_for(target) -> Backend:
    _load_builtin_backends()
    try:
        return _BACKENDS[target.kind]
    except KeyError:
        raise TargetError(
            f"target '{target.name}' has kind '{target.kind}', which no backend handles "
            f"(known: {', '.join(sorted(_BACKENDS))})"
        ) from None


def _load_builtin_backends() -> None:
    import importlib

    for name in ("llvm", "cuda", "metal", "hexagon"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


def lowering_pipeline(fast_math: bool = True):
    """Relax passes from the graph-passed module to unscheduled kernels (the pipeline's lower step;
    also what edgecc.passes.precision builds its per-layer timing kernels with)."""
    import tvm
    from tvm import relax

    from edgecc.passes.fast_math import FastMath

    # Fast math before legalization: exp/erf/tanh become vectorisable polynomials (topi fast_*),
    # within ~1e-7 relative of libm but without a scalar libm call per element. (edgecc's FastMath:
    # TVM's FastMathTransform crashes on calls of external functions.)
    fast = [FastMath()] if fast_math else []
    return tvm.transform.Sequential(
        [
            *fast,
            # graph passes leave var-to-var bindings (`y = x` where a rewrite replaced a value), and
            # FuseOps stops at one: FFN1's GELU output reached its bf16 cast through one, so the cast
            # ran as a kernel of its own (0.3 ms of DistilBERT's 11.6 in BF16)
            relax.transform.CanonicalizeBindings(),
            relax.backend.DispatchSampling(),
            relax.backend.DispatchSortScan(),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            # a kernel that only reshapes becomes a view of its input instead of a copy
            relax.transform.RewriteDataflowReshape(),
        ],
        name="lowered",
    )


def finalize_pipeline():
    """Relax passes after scheduling: identical for every kind in TVM 0.27."""
    import tvm
    from tvm import relax

    return tvm.transform.Sequential(
        [
            relax.transform.RewriteDataflowReshape(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
            relax.transform.StaticPlanBlockMemory(),
            relax.transform.LowerAllocTensor(),
            relax.transform.KillAfterLastUse(),
            relax.transform.LowerRuntimeBuiltin(),
            relax.transform.ComputePrimValue(),
            relax.transform.VMShapeLower(),
            relax.transform.AttachGlobalSymbol(),
        ]
    )


def build_relax(mod, target) -> Built:
    """relax.build with edgecc's own lowering already applied."""
    from tvm import relax

    tvm_target = target.tvm()
    with tvm_target:
        return Built(relax.build(mod, tvm_target, relax_pipeline=finalize_pipeline()))
