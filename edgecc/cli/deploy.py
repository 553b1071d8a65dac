"""`edgecc deploy ARTIFACT -o BUNDLE`: a folder the board runs with nothing else installed."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("deploy")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, help="Bundle folder to write.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads the C API uses by default (default: the board's cores; at most 4 per core).",
)
@click.option(
    "--cuda-runtime",
    type=click.Path(path_type=Path),
    default=None,
    help="Jetson: a libtvm_runtime_cuda.so to ship instead of the wheel's (e.g. one built for CUDA 12).",
)
@click.option(
    "--tvm-source",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Jetson, compiled with --cuda 12: a checkout of apache/tvm to build TVM's CUDA 12 runtime module "
    "from (once; cached in $EDGECC_CACHE/cuda-runtime).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Run the bundle here as a bare board would (empty environment; aarch64 under QEMU with a "
    "libc-only sysroot) and compare it with ONNX Runtime.",
)
@click.option("--quiet", "-q", is_flag=True)
def deploy_command(artifact, output, threads, cuda_runtime, tvm_source, check, quiet):
    """Bundle ARTIFACT for its board: model, TVM runtime libraries, C API, bin/edgecc-run, README."""
    from edgecc.bundle import deploy

    log = (lambda *_: None) if quiet else (lambda text: click.echo(text, err=True))
    result = deploy(artifact, output, threads=threads, cuda_runtime=cuda_runtime, tvm_source=tvm_source, log=log)
    click.echo(f"bundle:   {result.bundle} ({result.total_bytes / 1e6:.2f} MB, {result.target}, {result.kind})")
    click.echo(
        f"runtime:  {', '.join(f'{Path(k).name} {v / 1e6:.2f} MB' for k, v in result.runtime_libraries.items())}"
        if result.runtime_libraries
        else "runtime:  none shipped (see README.md)"
    )
    minimum = result.requirements.get("minimum_versions", {})
    if minimum:
        click.echo(
            f"needs:    {', '.join(minimum.values())}"
            + (
                f", CUDA driver >= {_cuda_text(result.requirements['cuda']['min_driver_version'])} "
                f"({result.requirements['cuda']['jetpack']})"
                if "cuda" in result.requirements
                else ""
            )
        )
    if check:
        from edgecc.bundle.check import check_bundle
        from edgecc.errors import VerificationError

        outcome = check_bundle(result.bundle, artifact)
        click.echo(f"check:    {outcome['status']} on {outcome['where']}: {outcome['reason']}")
        if outcome["status"] == "failed":
            raise VerificationError(f"the bundle's outputs differ from ONNX Runtime: {outcome['reason']}")
    click.echo(f"next:     {result.bundle / 'README.md'}")


def _cuda_text(version: int) -> str:
    return f"{version // 1000}.{(version % 1000) // 10}"
