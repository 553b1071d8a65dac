"""The compile pipeline: one flat list of named steps over a CompileContext (edgecc/context.py).

Each step reads what earlier steps left on the context and stores its own stage object there,
so every intermediate (ONNX, Relax before and after passes, lowered module, executable, artifact)
can be inspected or saved. The steps stay together in this one file (a little over 300 lines)
so the whole compile reads top to bottom; their work lives in the subpackages they call.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from edgecc.context import CompileContext, CompileResult, ModelSource
from edgecc.errors import EdgeccError, ModelError, RemoteError, VerificationError
from edgecc.interrupts import check as check_stop
from edgecc.options import CompileOptions
from edgecc.threads import host_threads


def default_output(model: str, target: str) -> Path:
    """Where a compile writes when no output folder is given (CLI and Python API alike)."""
    return Path("out") / f"{Path(str(model)).stem}-{Path(str(target)).stem}"


def resolve_target(ctx: CompileContext):
    from edgecc.backends import backend_for
    from edgecc.backends.cuda_toolkits import select_cuda, toolkit_of
    from edgecc.targets import load_target

    ctx.target = select_cuda(load_target(ctx.options.target), ctx.options.cuda)
    ctx.backend = backend_for(ctx.target)
    if "cuda" in ctx.target.extra:  # select_cuda records the CUDA row on CUDA targets only
        chosen = toolkit_of(ctx.target)
        ctx.log(f"      cuda: CUDA {chosen.major} for {chosen.jetpack}, device code by {chosen.device_compiler}")
    if ctx.target.toolchain is not None and not ctx.target.capabilities.runs_on_host:
        ctx.target.toolchain.require()  # a missing cross-compiler fails now, not after the build
    return ctx.target


def load_model(ctx: CompileContext):
    from edgecc.frontend import export_builtin, export_hf_folder

    text, opts = ctx.model, ctx.options
    path, (batch, seq_len), dynamic = Path(text), ctx.input_shape(), opts.dynamic_shapes
    if path.is_dir():
        exported = export_hf_folder(path, batch, seq_len, progress=ctx.log, dynamic=dynamic)
        ctx.source = ModelSource(text, exported.onnx_path, exported.weights, exported.parameters, "hf-folder")
    elif path.suffix.lower() == ".onnx" or path.exists() or "/" in text:
        ctx.source = ModelSource(text, path, "from the ONNX file", None, "onnx")
    else:
        exported = export_builtin(text, batch, seq_len, progress=ctx.log, dynamic=dynamic)
        ctx.source = ModelSource(exported.name, exported.onnx_path, exported.weights, exported.parameters, "builtin")
    return ctx.source


def import_model(ctx: CompileContext):
    from edgecc.frontend.inputs import parse_input_spec
    from edgecc.frontend.onnx_import import import_onnx, initializer_bytes, initializer_elements

    overrides = [parse_input_spec(text) for text in ctx.options.input_specs]
    if ctx.options.dynamic_shapes and ctx.bucket is None:  # fail before compiling a bucket the model cannot have
        from edgecc.buckets.compile import check_bucketable

        check_bucketable(ctx)
    try:
        ctx.imported = import_onnx(ctx.source.onnx_path, overrides, *ctx.input_shape())
    except ModelError:
        _explain_sequence_length(ctx, overrides)
        raise
    if ctx.source.parameters is None:
        ctx.source.parameters = initializer_elements(ctx.imported.onnx_model)
    ctx.weights_bytes = initializer_bytes(ctx.imported.onnx_model)
    ctx.relax_module = ctx.imported.relax_module
    if not ctx.imported.simplified:
        ctx.log(
            f"      graph simplification (onnxslim) failed ({ctx.imported.simplify_error}); "
            "imported the unsimplified graph"
        )
    return ctx.imported


def _explain_sequence_length(ctx: CompileContext, overrides) -> None:
    """A failed import at a length past the model's positions: say so, with the model's maximum."""
    from edgecc.frontend.positions import sequence_too_long

    options = ctx.options
    option = "--max-seq-len" if options.max_seq_len else "--seq-buckets" if options.seq_buckets else "--seq-len"
    error = sequence_too_long(ctx.source.onnx_path, overrides, ctx.input_shape()[1], option)
    if error is not None:
        raise error from None


def run_graph_passes(ctx: CompileContext):
    import tvm

    from edgecc.passes import graph_passes, pass_description, pass_name
    from edgecc.passes.instruments import CheckWellFormed, DumpModules

    passes = graph_passes(ctx.options, ctx.target)
    names = [pass_name(p) for p in passes]
    instruments = []
    if ctx.options.dump_ir is not None:
        instruments.append(DumpModules(ctx.options.dump_ir, names))
    if os.environ.get("EDGECC_CHECK_WELL_FORMED") == "1":
        instruments.append(CheckWellFormed(names))
    mod = ctx.relax_module
    with ctx.target.tvm(), tvm.transform.PassContext(opt_level=3, instruments=instruments):
        for graph_pass in passes:
            ctx.log(f"      {pass_description(graph_pass)}")
            mod = graph_pass(mod)
            stats = getattr(graph_pass, "stats", None)
            if stats is not None:
                ctx.pass_stats[pass_name(graph_pass)] = stats
                if hasattr(stats, "summary"):  # e.g. the layers a precision pass kept FP32, and why
                    ctx.log(f"      {stats.summary()}")
                if hasattr(stats, "explain"):  # a pass whose fast path did not (fully) apply says so, or refuses
                    stats.explain(ctx.log, refuse=ctx.bucket is None)  # buckets: the largest decides
    ctx.relax_module = mod
    ctx.applied_precision = _applied_precision(ctx)
    return mod


def _applied_precision(ctx: CompileContext):
    """What the layers got (a bf16 build without BF16 arithmetic is an FP32 build), and the sparsity."""
    from edgecc.passes.precision.applied import applied_precision

    sparse = ctx.pass_stats.get("rewrite_attention_sparse")
    pattern = (
        f"{ctx.options.sparse_attention}: {sparse.keys_per_query} keys per query in "
        f"{sparse.attentions_rewritten} attention(s)"
        if sparse is not None and sparse.attentions_rewritten
        else ""
    )
    return applied_precision(ctx.options.precision, ctx.pass_stats, pattern)


def lower(ctx: CompileContext):
    import tvm

    from edgecc.backends import lowering_pipeline

    passes = lowering_pipeline(ctx.options.fast_math)
    with ctx.target.tvm(), tvm.transform.PassContext(opt_level=3, instruments=_dump_instruments(ctx, ["lowered"])):
        ctx.lowered = passes(ctx.relax_module)
    return ctx.lowered


def schedule(ctx: CompileContext):
    """Tuned records for this exact target first, then default schedules for the rest."""
    from edgecc.schedules.common import schedule_summary
    from edgecc.tuning.schedule import schedule_module

    mod, ctx.tuning = schedule_module(ctx.lowered, ctx.target, ctx.backend, ctx.options, ctx.log)
    ctx.scheduled = mod
    ctx.schedules = schedule_summary(mod)
    ctx.log(f"      schedules: {ctx.schedules.line()}")
    for kernel, reasons in ctx.schedules.failures.items():
        ctx.log(f"      schedule rule failed on {kernel}: {'; '.join(reasons)}")
    if ctx.schedules.fallbacks:
        ctx.log(
            f"      {len(ctx.schedules.fallbacks)} kernel(s) only got the generic fallback schedule: "
            f"{', '.join(ctx.schedules.fallbacks)}"
        )
    _dump_module(ctx, "scheduled", mod)
    return mod


def compile_buckets(ctx: CompileContext):
    """--max-seq-len / --seq-buckets / --max-batch: the four steps above once more for every smaller
    bucket, then all of them in one module under a `main` that pads each input to the smallest bucket
    that holds it and cuts the outputs back (edgecc/buckets/). Nothing to do for one shape."""
    from edgecc.buckets.compile import compile_buckets as merge_buckets

    return merge_buckets(ctx, [import_model, run_graph_passes, lower, schedule])


def build(ctx: CompileContext):
    ctx.built = ctx.backend.build(ctx.scheduled, ctx.target)
    if "cuda_release" in ctx.built.details:  # CUDA: which release made the device code decides the board's JetPack
        details = ctx.built.details
        ctx.log(f"      device code: CUDA {details['cuda_release']}, {details['device_code']}")
    return ctx.built


def package(ctx: CompileContext):
    from edgecc.artifact.manifest import REFERENCE_MODEL, write_manifest

    ctx.packaged = ctx.backend.package(ctx.built, ctx.target, ctx.stage_dir)
    shutil.copyfile(ctx.source.onnx_path, ctx.stage_dir / REFERENCE_MODEL)
    ctx.manifest = write_manifest(
        ctx.stage_dir,
        model_name=ctx.source.name,
        target=ctx.target,
        packaged=ctx.packaged,
        inputs=ctx.imported.inputs,
        outputs=ctx.imported.outputs,
        backend=ctx.backend,
        precision=ctx.applied_precision.effective,
        applied_precision=ctx.applied_precision.to_dict(),
        index_bounds=ctx.imported.index_bounds,
        buckets=ctx.buckets.manifest_entry() if ctx.buckets is not None else None,
    )
    return ctx.packaged


def _can_run(ctx: CompileContext) -> bool:
    remote = bool(ctx.options.rpc or ctx.options.tracker)
    return ctx.packaged.loadable and (ctx.target.capabilities.runs_on_host or remote)


def verify(ctx: CompileContext):
    import onnxruntime

    from edgecc.artifact.loader import load_artifact
    from edgecc.frontend.inputs import load_inputs_file, sample_inputs
    from edgecc.measure.latency import onnxruntime_session
    from edgecc.measure.verification import applied_tolerance, output_errors, verdict

    opts = ctx.options
    specs = ctx.imported.inputs
    ctx.sample_inputs = (
        load_inputs_file(opts.sample_inputs, specs)
        if opts.sample_inputs
        else sample_inputs(specs, ctx.imported.index_bounds, seed=opts.seed)
    )
    if not (opts.verify or opts.measure) or not _can_run(ctx):
        reason = (
            "disabled"
            if not (opts.verify or opts.measure)
            else f"target '{ctx.target.name}' cannot run on this machine and no --rpc/--tracker board was given"
            if ctx.packaged.loadable
            else "; ".join(ctx.packaged.missing) or "artifact is not loadable here"
        )
        ctx.verification = {"status": "skipped", "reason": reason}
        return ctx.verification
    ctx.artifact = load_artifact(
        ctx.stage_dir, rpc=opts.rpc, tracker=opts.tracker, key=opts.key, timeout=opts.rpc_timeout
    )
    if not opts.verify:
        ctx.verification = {"status": "skipped", "reason": "disabled with --no-verify"}
        return ctx.verification
    actual = ctx.artifact.run(ctx.sample_inputs)
    names = [spec.name for spec in ctx.imported.outputs]
    try:
        session = onnxruntime_session(ctx.source.onnx_path, threads=host_threads())
        ctx.reference_outputs = dict(zip(names, session.run(names, ctx.sample_inputs)))
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types; the reference failing is one line
        text = str(exc).strip().splitlines()
        raise VerificationError(
            f"ONNX Runtime (the reference) cannot run {ctx.source.onnx_path}, so the artifact "
            f"cannot be verified: {(text[0] if text else type(exc).__name__)[:300]} "
            "(--no-verify compiles without the check)"
        ) from None
    rows = output_errors(actual, ctx.reference_outputs)
    tolerance = applied_tolerance(ctx, ctx.imported.outputs)
    status, reason = verdict(rows, tolerance)
    ctx.verification = {
        "status": status,
        "reason": reason,
        "reference": f"onnxruntime {onnxruntime.__version__}",
        "tolerance": tolerance,
        "precision": ctx.applied_precision.label,
        "where": ctx.artifact.where,
        "inputs": "from " + str(opts.sample_inputs)
        if opts.sample_inputs
        else f"random in valid ranges (seed {opts.seed})",
        "outputs": rows,
    }
    if status == "failed":
        raise VerificationError(f"verification failed for {ctx.source.name} on {ctx.target.name}: {reason}")
    return ctx.verification


def measure(ctx: CompileContext):
    from edgecc.measure.energy import measure_energy
    from edgecc.measure.environment import environment
    from edgecc.measure.latency import measure_latency
    from edgecc.measure.profile import profile_artifact
    from edgecc.measure.roofline import machine_from_board

    if not ctx.options.measure or ctx.artifact is None:
        ctx.latency = {}
        return ctx.latency
    opts, artifact = ctx.options, ctx.artifact
    try:
        ctx.latency = measure_latency(
            artifact,
            ctx.source.onnx_path,
            ctx.sample_inputs,
            opts.min_seconds,
            ort_threads=ctx.target.board.cores,
            log=ctx.log,
        )
        ctx.environment = environment() if artifact.session is None else None
        ctx.energy = measure_energy(
            artifact, ctx.sample_inputs, ctx.target, ctx.latency["edgecc"]["median_ms"] / 1e3, ctx.log
        )
        profiled = ctx.buckets.profiled if ctx.buckets is not None else ctx.scheduled  # the largest bucket's kernels
        ctx.profile = profile_artifact(
            profiled,
            artifact,
            ctx.stage_dir / ctx.manifest["library"],
            ctx.sample_inputs,
            machine_from_board(ctx.target.board),
            progress=None if opts.quiet else ctx.log,
            target=ctx.target,
        )
    except RemoteError as exc:
        # The board stopped answering (its session deadline, mostly) after the artifact had passed
        # verification: keep the artifact, and let the report and the exit code say what failed.
        _measurement_failed(ctx, exc)
    return ctx.latency


def _measurement_failed(ctx: CompileContext, exc: RemoteError) -> None:
    failure = {"status": "failed", "reason": str(exc), "where": ctx.artifact.where}
    if ctx.latency.get("edgecc"):  # the model was timed; its kernels were not
        ctx.profile = {"kernels": [], "sum_ms": 0.0, "kernel_count": 0, "skipped": [], **failure}
        doing = "profiling the kernels"
    else:
        ctx.latency, ctx.energy, ctx.profile = failure, None, None
        doing = "timing the model"
    ctx.measurement_failure = f"{doing} on the board failed: {exc}"
    ctx.log(f"      warning: {ctx.measurement_failure}; the verified artifact is kept")
    ctx.artifact.close()  # the session is gone: later steps must not call into it
    ctx.artifact = None


def check_buckets(ctx: CompileContext):
    """With buckets: verify at sizes inside every bucket against ONNX Runtime at the true size, and
    time each bucket (edgecc/buckets/check.py). Nothing to do for one shape."""
    from edgecc.buckets.check import check_buckets as check

    return check(ctx)


def evaluate_accuracy(ctx: CompileContext):
    if ctx.options.precision == "fp32" and not ctx.options.sparse_attention:
        return {}
    if ctx.artifact is None:
        reason = ctx.measurement_failure or "the artifact cannot run here"
        ctx.accuracy = {"status": "skipped", "reason": reason}
        return ctx.accuracy
    from edgecc.measure.accuracy import evaluate

    ctx.accuracy = evaluate(ctx)
    limit = ctx.options.max_accuracy_drop
    drop = ctx.accuracy.get("accuracy_drop")
    if limit is not None and drop is not None and drop > limit:
        raise VerificationError(f"accuracy drop {drop:.4g} exceeds --max-accuracy-drop {limit:g}")
    return ctx.accuracy


def report(ctx: CompileContext):
    from edgecc.reports import report_data, write_reports

    ctx.report = report_data(ctx)
    write_reports(ctx.stage_dir, ctx.report)
    return ctx.report


STEPS = [
    ("resolve target", resolve_target),
    ("load model", load_model),
    ("import", import_model),
    ("graph passes", run_graph_passes),
    ("lower", lower),
    ("schedule", schedule),
    ("buckets", compile_buckets),
    ("build", build),
    ("package", package),
    ("verify", verify),
    ("measure", measure),
    ("bucket checks", check_buckets),
    ("accuracy", evaluate_accuracy),
    ("report", report),
]


def step_names() -> list[str]:
    return [name for name, _ in STEPS]


def pipeline_plan(options: CompileOptions) -> list[str]:
    """The steps, with the graph passes these options run on their target (for --print-pipeline)."""
    from edgecc.passes import graph_passes, pass_description
    from edgecc.targets import load_target

    target = load_target(options.target)
    lines = [f"target {target.name} ({target.kind})"]
    for index, name in enumerate(step_names(), 1):
        lines.append(f"{index:2d}. {name}")
        if name == "graph passes":
            lines += [f"      - {pass_description(p)}" for p in graph_passes(options, target)]
        if name == "buckets" and options.dynamic_shapes:
            from edgecc.buckets.plan import bucket_plan

            lines.append("      - " + ", ".join(str(b) for b in bucket_plan(options).buckets))
    return lines


def _dump_instruments(ctx: CompileContext, names: list[str]) -> list:
    from edgecc.passes.instruments import DumpModules

    return [DumpModules(ctx.options.dump_ir, names, numbered=False)] if ctx.options.dump_ir is not None else []


def _dump_module(ctx: CompileContext, name: str, mod) -> None:
    if ctx.options.dump_ir is not None:
        folder = Path(ctx.options.dump_ir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(mod.script(show_meta=False))


def named_paths(options: CompileOptions) -> list[tuple[str, Path]]:
    """The paths the user gave besides -o (refused inside it: the final swap would delete them)."""
    paths = [("--dump-ir", options.dump_ir), ("--inputs", options.sample_inputs)]
    paths += [("--calibration", options.calibration)] + [("--tuning-logs", p) for p in options.tuning_logs]
    return [(option, Path(path)) for option, path in paths if path is not None]


def run_pipeline(model: str, options: CompileOptions, log=print) -> CompileResult:
    from edgecc.artifact.output import check_output_folder
    from edgecc.atomic import staged_directory

    ctx = CompileContext(model=model, options=options, log=log)
    output = Path(options.output) if options.output is not None else default_output(model, options.target)
    check_output_folder(output, model, named_paths(options))
    try:
        with staged_directory(output) as stage:
            ctx.stage_dir = stage
            for name, step in STEPS:
                started = time.perf_counter()
                log(f"[{len(ctx.step_seconds) + 1}/{len(STEPS)}] {name}")
                try:
                    step(ctx)
                except EdgeccError:
                    check_stop()  # the step's failure may be a library's odd end after a signal it swallowed
                    raise
                except MemoryError:
                    raise EdgeccError(f"out of memory during '{name}'") from None
                except Exception as exc:  # anything else is a bug or a TVM failure: one line naming the step
                    check_stop()
                    raise _unexpected(name, ctx, exc) from exc
                # every step calls libraries (onnxslim, TVM) that may swallow a signal in a bare `except:`
                check_stop()
                ctx.step_seconds.append((name, time.perf_counter() - started))
    finally:
        if ctx.artifact is not None:
            ctx.artifact.close()
    ctx.stage_dir = output
    return CompileResult(output, ctx.manifest, ctx.report, ctx)


def _unexpected(step: str, ctx: CompileContext, exc: Exception) -> EdgeccError:
    text = str(exc).strip().splitlines()
    detail = text[-1] if text else ""
    if not detail or detail == type(exc).__name__:  # a bare `assert` inside TVM: say where it fired
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        detail = (
            f"assertion in {'/'.join(Path(frames[-1].filename).parts[-3:])}:{frames[-1].lineno} ({frames[-1].name})"
            if frames
            else type(exc).__name__
        )
    cls = ModelError if step in ("import", "graph passes", "lower") else EdgeccError
    return cls(
        f"{step} failed for '{ctx.model}' on target '{ctx.options.target}': {type(exc).__name__}: {detail[:400]}"
    )
