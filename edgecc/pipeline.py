"""The compile pipeline: one flat list of named steps over a CompileContext.

Each step reads what earlier steps left on the context and stores its own stage object there,
so every intermediate (ONNX, Relax before and after passes, lowered module, executable, artifact)
can be inspected or saved.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EdgeccError, ModelError, VerificationError
from .options import CompileOptions
from .threads import host_threads


@dataclass
class ModelSource:
    name: str  # what the user asked for (built-in name or path)
    onnx_path: Path
    weights: str
    parameters: int | None
    kind: str  # "builtin", "onnx" or "hf-folder"


@dataclass
class CompileContext:
    model: str
    options: CompileOptions
    log: object = print
    target: object = None
    backend: object = None
    source: ModelSource | None = None
    imported: object = None  # edgecc.importer.ImportedModel
    relax_module: object = None  # after graph passes
    lowered: object = None  # after legalize + fuse, kernels unscheduled
    scheduled: object = None
    tuning: dict = field(default_factory=dict)
    executable: object = None
    stage_dir: Path | None = None
    packaged: object = None
    manifest: dict = field(default_factory=dict)
    sample_inputs: dict = field(default_factory=dict)
    reference_outputs: dict = field(default_factory=dict)
    artifact: object = None  # runtime.LoadedArtifact when the artifact can run
    verification: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    accuracy: dict = field(default_factory=dict)
    weights_bytes: int = 0  # the model's weights as the ONNX model stores them
    step_seconds: list = field(default_factory=list)


@dataclass
class CompileResult:
    artifact_dir: Path
    manifest: dict
    report: dict
    context: CompileContext

    def __repr__(self) -> str:
        return f"CompileResult({self.artifact_dir}, verification={self.report['verification']['status']})"


def resolve_target(ctx: CompileContext):
    from .backends import backend_for
    from .targets import load_target

    ctx.target = load_target(ctx.options.target)
    ctx.backend = backend_for(ctx.target)
    if ctx.target.toolchain is not None and not ctx.target.capabilities.runs_on_host:
        ctx.target.toolchain.require()  # a missing cross-compiler fails now, not after the build
    return ctx.target


def load_model(ctx: CompileContext):
    from .models import export_builtin, export_hf_folder

    text, opts = ctx.model, ctx.options
    path = Path(text)
    if path.is_dir():
        exported = export_hf_folder(path, opts.batch, opts.seq_len, progress=ctx.log)
        ctx.source = ModelSource(text, exported.onnx_path, exported.weights, exported.parameters, "hf-folder")
    elif path.suffix.lower() == ".onnx" or path.exists() or "/" in text:
        ctx.source = ModelSource(text, path, "from the ONNX file", None, "onnx")
    else:
        exported = export_builtin(text, opts.batch, opts.seq_len, progress=ctx.log)
        ctx.source = ModelSource(exported.name, exported.onnx_path, exported.weights, exported.parameters, "builtin")
    return ctx.source


def import_model(ctx: CompileContext):
    from .importer import import_onnx
    from .inputs import parse_input_spec

    overrides = [parse_input_spec(text) for text in ctx.options.input_specs]
    ctx.imported = import_onnx(ctx.source.onnx_path, overrides, ctx.options.batch, ctx.options.seq_len)
    if ctx.source.parameters is None:
        ctx.source.parameters = sum(_numel(init.dims) for init in ctx.imported.onnx_model.graph.initializer)
    ctx.weights_bytes = sum(_numel(init.dims) * _itemsize(init.data_type)
                            for init in ctx.imported.onnx_model.graph.initializer)
    ctx.relax_module = ctx.imported.relax_module
    return ctx.imported


def _itemsize(onnx_type: int) -> int:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(onnx_type).itemsize


def _numel(dims) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


def run_graph_passes(ctx: CompileContext):
    from .passes import graph_passes

    mod = ctx.relax_module
    for index, (name, graph_pass) in enumerate(graph_passes(ctx.options, ctx.target)):
        with ctx.target.tvm():
            mod = graph_pass(mod)
        _dump(ctx, f"{index + 1:02d}-{name}", mod)
    ctx.relax_module = mod
    return mod


def lower(ctx: CompileContext):
    import tvm
    from tvm import relax

    # Fast math before legalization: exp/erf/tanh become vectorisable polynomials (topi fast_*),
    # within ~1e-7 relative of libm but without a scalar libm call per element.
    fast_math = [relax.transform.FastMathTransform()] if ctx.options.fast_math else []
    passes = tvm.transform.Sequential([
        *fast_math,
        relax.backend.DispatchSampling(),
        relax.backend.DispatchSortScan(),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        # a kernel that only reshapes becomes a view of its input instead of a copy
        relax.transform.RewriteDataflowReshape(),
    ])
    with ctx.target.tvm():
        ctx.lowered = passes(ctx.relax_module)
    _dump(ctx, "lowered", ctx.lowered)
    return ctx.lowered


def schedule(ctx: CompileContext):
    """Tuned records for this exact target first, then default schedules for the rest."""
    mod = ctx.lowered
    if ctx.options.tune:
        from .tuning import tune

        log_dir = _own_log_dir(ctx)
        result = tune(mod, ctx.target, log_dir, trials=ctx.options.trials, budget_s=ctx.options.budget_seconds,
                      session=_remote_spec(ctx), progress=not ctx.options.quiet)
        ctx.tuning["run"] = _as_dict(result)
    log_dirs = _tuning_log_dirs(ctx)
    if log_dirs:
        from .tuning import apply_tuning_records

        mod, summary = apply_tuning_records(mod, ctx.target, log_dirs)
        ctx.tuning["applied"] = _as_dict(summary)
        if summary.tuned and ctx.target.capabilities.runs_on_host and not _remote_spec(ctx):
            mod = _keep_faster_of_tuned_and_default(ctx, mod)
    mod = ctx.backend.default_schedule(mod, ctx.target)
    ctx.scheduled = mod
    _dump(ctx, "scheduled", mod)
    return mod


def _keep_faster_of_tuned_and_default(ctx: CompileContext, tuned):
    from tvm.tirx import PrimFunc

    from .tuning.apply import _is_scheduled
    from .tuning.prefer_faster import prefer_faster_schedules

    names = [gv.name_hint for gv, func in ctx.lowered.functions.items()
             if isinstance(func, PrimFunc) and not _is_scheduled(func) and _is_scheduled(tuned[gv.name_hint])]
    ctx.log(f"timing {len(names)} tuned kernels against their default schedules ...")
    mod, comparison = prefer_faster_schedules(tuned, ctx.lowered, ctx.target, ctx.backend.default_schedule, names)
    ctx.tuning["compared_with_default"] = comparison.to_dict()
    return mod


def _own_log_dir(ctx: CompileContext) -> Path:
    if ctx.options.tuning_logs:
        return Path(ctx.options.tuning_logs[0]) / ctx.target.name
    return Path("tuning_logs") / ctx.target.name


def _tuning_log_dirs(ctx: CompileContext) -> list[Path]:
    roots = [Path(p) for p in ctx.options.tuning_logs] or [Path("tuning_logs")]
    dirs = []
    for root in roots:
        candidate = root / ctx.target.name
        if candidate.is_dir():
            dirs.append(candidate)
        elif root.is_dir() and any(root.glob("*.jsonl")):
            dirs.append(root)
    return dirs


def _remote_spec(ctx: CompileContext) -> dict | None:
    opts = ctx.options
    if not (opts.rpc or opts.tracker):
        return None
    return {"rpc": opts.rpc, "tracker": opts.tracker, "key": opts.key, "timeout": opts.rpc_timeout}


def _as_dict(value) -> dict:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return dict(value)


def build(ctx: CompileContext):
    ctx.executable = ctx.backend.build(ctx.scheduled, ctx.target)
    return ctx.executable


def package(ctx: CompileContext):
    from .artifact import REFERENCE_MODEL, write_manifest

    ctx.packaged = ctx.backend.package(ctx.executable, ctx.target, ctx.stage_dir)
    shutil.copyfile(ctx.source.onnx_path, ctx.stage_dir / REFERENCE_MODEL)
    ctx.manifest = write_manifest(ctx.stage_dir, model_name=ctx.source.name, target=ctx.target,
                                  packaged=ctx.packaged, inputs=ctx.imported.inputs,
                                  outputs=ctx.imported.outputs, backend=ctx.backend,
                                  precision=ctx.options.precision, index_bounds=ctx.imported.index_bounds)
    return ctx.packaged


def _can_run(ctx: CompileContext) -> bool:
    remote = bool(ctx.options.rpc or ctx.options.tracker)
    return ctx.packaged.loadable and (ctx.target.capabilities.runs_on_host or remote)


def verify(ctx: CompileContext):
    from .inputs import load_inputs_file, sample_inputs
    from .measure import onnxruntime_session
    from .runtime import load_artifact
    from .verify import output_errors, verdict

    opts = ctx.options
    specs = ctx.imported.inputs
    ctx.sample_inputs = (load_inputs_file(opts.sample_inputs, specs) if opts.sample_inputs
                         else sample_inputs(specs, ctx.imported.index_bounds, seed=opts.seed))
    if not (opts.verify or opts.measure) or not _can_run(ctx):
        reason = ("disabled" if not (opts.verify or opts.measure) else
                  f"target '{ctx.target.name}' cannot run on this machine and no --rpc/--tracker board was given"
                  if ctx.packaged.loadable else "; ".join(ctx.packaged.missing) or "artifact is not loadable here")
        ctx.verification = {"status": "skipped", "reason": reason}
        return ctx.verification
    ctx.artifact = load_artifact(ctx.stage_dir, rpc=opts.rpc, tracker=opts.tracker, key=opts.key,
                                 timeout=opts.rpc_timeout)
    if not opts.verify:
        ctx.verification = {"status": "skipped", "reason": "disabled with --no-verify"}
        return ctx.verification
    actual = ctx.artifact.run(ctx.sample_inputs)
    session = onnxruntime_session(ctx.source.onnx_path, threads=host_threads())
    names = [spec.name for spec in ctx.imported.outputs]
    ctx.reference_outputs = dict(zip(names, session.run(names, ctx.sample_inputs)))
    rows = output_errors(actual, ctx.reference_outputs)
    status, reason = verdict(rows, opts.resolved_tolerance())
    import onnxruntime

    ctx.verification = {"status": status, "reason": reason, "reference": f"onnxruntime {onnxruntime.__version__}",
                        "tolerance": opts.resolved_tolerance(), "where": ctx.artifact.where,
                        "inputs": "from " + str(opts.sample_inputs) if opts.sample_inputs else
                        f"random in valid ranges (seed {opts.seed})", "outputs": rows}
    if status == "failed":
        raise VerificationError(f"verification failed for {ctx.source.name} on {ctx.target.name}: {reason}")
    return ctx.verification


def measure(ctx: CompileContext):
    from .measure import onnxruntime_session, time_artifact, time_onnxruntime

    if not ctx.options.measure or ctx.artifact is None:
        ctx.latency = {}
        return ctx.latency
    opts = ctx.options
    ctx.log(f"timing edgecc on {ctx.artifact.where} for at least {opts.min_seconds:g} s ...")
    edgecc_stats = time_artifact(ctx.artifact, ctx.sample_inputs, opts.min_seconds)
    ctx.latency = {"edgecc": edgecc_stats, "where": ctx.artifact.where, "emulated": ctx.artifact.emulated,
                   "warnings": []}
    if ctx.artifact.session is None:
        threads = ctx.target.board.cores
        ctx.log(f"timing ONNX Runtime ({threads} threads) on the same inputs ...")
        ort_stats = time_onnxruntime(onnxruntime_session(ctx.source.onnx_path, threads), ctx.sample_inputs,
                                     opts.min_seconds)
        ctx.latency["onnxruntime"] = ort_stats
        ctx.latency["onnxruntime_threads"] = threads
        ctx.latency["ratio_vs_onnxruntime"] = edgecc_stats["median_ms"] / ort_stats["median_ms"]
    for name in ("edgecc", "onnxruntime"):
        if ctx.latency.get(name, {}).get("unstable"):
            ctx.latency["warnings"].append(
                f"{name} timings are unstable (CV {ctx.latency[name]['cv']:.2f}); is the machine busy?")
    from .measure import measure_extras  # energy, per-kernel profile, environment (edgecc/measure.py)

    ctx.measurements = measure_extras(ctx)
    return ctx.latency


def evaluate_accuracy(ctx: CompileContext):
    if ctx.options.precision == "fp32" and not ctx.options.sparse_attention:
        return {}
    if ctx.artifact is None:
        ctx.accuracy = {"status": "skipped", "reason": "the artifact cannot run here"}
        return ctx.accuracy
    try:
        from .accuracy import evaluate
    except ImportError:
        return {}
    ctx.accuracy = evaluate(ctx)
    limit = ctx.options.max_accuracy_drop
    drop = ctx.accuracy.get("accuracy_drop")
    if limit is not None and drop is not None and drop > limit:
        raise VerificationError(f"accuracy drop {drop:.4g} exceeds --max-accuracy-drop {limit:g}")
    return ctx.accuracy


def report(ctx: CompileContext):
    from .artifact import file_table
    from .report import write_reports

    total = sum(seconds for _, seconds in ctx.step_seconds)
    files = file_table(ctx.stage_dir)
    data = {
        "model": {"name": ctx.source.name, "source": str(ctx.model), "kind": ctx.source.kind,
                  "weights": ctx.source.weights, "parameters": ctx.source.parameters,
                  "weights_bytes": ctx.weights_bytes,
                  "onnx_ops": ctx.imported.op_counts},
        "target": ctx.target.to_dict(),
        "options": ctx.options.to_dict(),
        "versions": ctx.manifest["versions"],
        "compile": {"steps": [{"name": n, "seconds": s} for n, s in ctx.step_seconds], "total_seconds": total},
        "artifact": {"library": ctx.packaged.library, "files": files, "contents": ctx.packaged.contents,
                     "load": ctx.packaged.load, "loadable": ctx.packaged.loadable, "missing": ctx.packaged.missing,
                     "library_bytes": files.get(ctx.packaged.library, {}).get("bytes")},
        "verification": ctx.verification,
        "latency": ctx.latency,
        "tuning": ctx.tuning,
        "accuracy": ctx.accuracy,
        **getattr(ctx, "measurements", {}),  # energy, profile, environment from the measure step
    }
    write_reports(ctx.stage_dir, data)
    ctx.report = data
    return data


STEPS = [
    ("resolve target", resolve_target),
    ("load model", load_model),
    ("import", import_model),
    ("graph passes", run_graph_passes),
    ("lower", lower),
    ("schedule", schedule),
    ("build", build),
    ("package", package),
    ("verify", verify),
    ("measure", measure),
    ("accuracy", evaluate_accuracy),
    ("report", report),
]


def step_names() -> list[str]:
    return [name for name, _ in STEPS]


def _dump(ctx: CompileContext, name: str, mod) -> None:
    if ctx.options.dump_ir is None:
        return
    folder = Path(ctx.options.dump_ir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(mod.script(show_meta=False))


def run_pipeline(model: str, options: CompileOptions, log=print) -> CompileResult:
    from ._atomic import staged_directory

    ctx = CompileContext(model=model, options=options, log=log)
    output = Path(options.output)
    _check_output_writable(output)
    try:
        with staged_directory(output) as stage:
            ctx.stage_dir = stage
            for name, step in STEPS:
                started = time.perf_counter()
                log(f"[{len(ctx.step_seconds) + 1}/{len(STEPS)}] {name}")
                try:
                    step(ctx)
                except EdgeccError:
                    raise
                except MemoryError:
                    raise EdgeccError(f"out of memory during '{name}'") from None
                except Exception as exc:
                    raise _unexpected(name, ctx, exc) from exc
                ctx.step_seconds.append((name, time.perf_counter() - started))
    finally:
        if ctx.artifact is not None:
            ctx.artifact.close()
    ctx.stage_dir = output
    return CompileResult(output, ctx.manifest, ctx.report, ctx)


def _unexpected(step: str, ctx: CompileContext, exc: Exception) -> EdgeccError:
    text = str(exc).strip().splitlines()
    detail = text[-1] if text else type(exc).__name__
    cls = ModelError if step in ("import", "graph passes", "lower") else EdgeccError
    return cls(f"{step} failed for '{ctx.model}' on target '{ctx.options.target}': {type(exc).__name__}: "
               f"{detail[:400]}")


def _check_output_writable(output: Path) -> None:
    import os

    if output.exists() and not output.is_dir():
        raise EdgeccError(f"cannot write the output folder {output}: a file of that name exists")
    probe = output.parent if str(output.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise EdgeccError(f"cannot write the output folder {output}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK):
        raise EdgeccError(f"cannot write the output folder {output}: {probe} is not writable")
