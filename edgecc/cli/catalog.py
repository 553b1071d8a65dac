"""`edgecc models` and `edgecc targets`: what can be compiled, and for what."""

from __future__ import annotations

import json

import click


@click.command()
def models():
    """List the built-in model architectures."""
    from edgecc.frontend import BUILTIN_MODELS

    for model in BUILTIN_MODELS.values():
        click.echo(f"{model.name:16s} {model.modality:6s} {model.description}")


@click.command()
@click.argument("name", required=False)
def targets(name):
    """List the known targets, or show one (a name, family alias or path to a target file)."""
    from edgecc.targets import aliases, known_target_names, load_target

    if name:
        click.echo(json.dumps(load_target(name).to_dict(), indent=2))
        return
    for target_name in known_target_names():
        target = load_target(target_name)
        click.echo(f"{target.name:28s} {target.kind:8s} {target.description}")
    click.echo("\nFamilies: " + ", ".join(f"{a} -> {b}" for a, b in sorted(aliases().items())))
