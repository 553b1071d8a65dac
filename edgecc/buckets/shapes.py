"""Which axes of a model's inputs and outputs follow the batch and the sequence length, and the
checks a caller's tensors pass against them.

A TensorSpec's `dynamic_axes` is ((axis, "batch" | "sequence"), ...); its `shape` is the largest
the artifact accepts, and any size from 1 to that is valid on a dynamic axis, the same size for
every input that has the axis (the manifest writes {"1": "sequence"}).
"""

from __future__ import annotations

from dataclasses import replace

from edgecc.buckets.kernels import BATCH, SEQUENCE
from edgecc.errors import InputSpecError, ModelError


def _fmt(shape) -> str:
    return "x".join(str(d) if isinstance(d, int) and d > 0 else (str(d) if d else "?") for d in shape)


def input_dynamic_axes(graph_inputs, plan, model: str) -> dict[str, tuple]:
    """{input name: ((axis, dim name), ...)} from the ONNX graph's symbolic dimensions.

    graph_inputs: [(name, dims, dtype)] with None or a name for a symbolic dimension. The batch is
    axis 0; the sequence is every other symbolic axis (one name across the inputs). Raises
    ModelError when the model cannot be bucketed the way the options ask."""
    axes = {name: [] for name, _, _ in graph_inputs}
    symbolic = lambda dim: not (isinstance(dim, int) and dim > 0)  # noqa: E731 - a one-line predicate
    if plan.batches is not None:
        for name, dims, _ in graph_inputs:
            if not dims or not symbolic(dims[0]):
                raise ModelError(
                    f"{model}: input '{name}' has a fixed batch dimension ({_fmt(dims)}); --max-batch "
                    "needs a dynamic batch axis (torch.onnx.export(..., dynamic_axes={'" + name + "': {0: 'batch'}}))"
                )
            axes[name].append((0, BATCH))
    if plan.seq_lens is not None:
        names = {dim for _, dims, _ in graph_inputs for dim in dims[1:] if symbolic(dim)}
        if not names:
            shapes = ", ".join(f"{n} {_fmt(d)}" for n, d, _ in graph_inputs)
            raise ModelError(
                f"{model}: no input has a dynamic sequence axis ({shapes}); --max-seq-len needs one "
                "(export with dynamic_axes, e.g. {'input_ids': {1: 'sequence'}}), or compile one length "
                "with --seq-len"
            )
        if len(names) > 1:
            raise ModelError(
                f"{model}: the inputs have several dynamic dimensions besides the batch "
                f"({', '.join(sorted(str(n) for n in names))}); --max-seq-len buckets one sequence axis"
            )
        for name, dims, _ in graph_inputs:
            axes[name] += [(axis, SEQUENCE) for axis, dim in enumerate(dims) if axis > 0 and symbolic(dim)]
        masks = [
            name
            for name, _, _ in graph_inputs
            if "mask" in name.lower() and any(dim == SEQUENCE for _, dim in axes[name])
        ]
        if not masks:
            raise ModelError(
                f"{model}: no attention mask input with the sequence axis (inputs: "
                f"{', '.join(n for n, _, _ in graph_inputs)}); without one the padding of a shorter "
                "input would change the real tokens' results, so --max-seq-len cannot bucket it "
                "(compile one length with --seq-len, or bucket only the batch with --max-batch)"
            )
    return {name: tuple(found) for name, found in axes.items() if found}


def output_dynamic_axes(compiled: list[tuple[object, list]]) -> dict[str, tuple]:
    """{output name: ((axis, dim name), ...)} from the output shapes of models compiled at different
    sizes: compiled = [(Bucket, [TensorSpec])]. An axis is dynamic when it changes with the batch or
    the length and always equals it; any other change cannot be cut back, so it raises."""
    first_bucket, first_outputs = compiled[0]
    axes = {}
    for index, spec in enumerate(first_outputs):
        found = []
        for axis in range(len(spec.shape)):
            sizes = [(bucket, outputs[index].shape[axis]) for bucket, outputs in compiled]
            if len({size for _, size in sizes}) == 1:
                continue
            for dim, attribute in ((BATCH, "batch"), (SEQUENCE, "seq_len")):
                if all(getattr(bucket, attribute) == size for bucket, size in sizes):
                    found.append((axis, dim))
                    break
            else:
                seen = ", ".join(f"{size} at {bucket}" for bucket, size in sizes)
                raise ModelError(
                    f"output '{spec.name}' dimension {axis} changes with the input shape ({seen}) but "
                    "is not the batch or the sequence length, so it cannot be cut back to a caller's size"
                )
        if found:
            axes[spec.name] = tuple(found)
    return axes


def with_dynamic_axes(specs, axes: dict[str, tuple]) -> list:
    return [replace(spec, dynamic_axes=axes.get(spec.name, ())) for spec in specs]


def specs_at(specs, batch: int | None = None, seq_len: int | None = None) -> list:
    """The specs at one size (for sample inputs): dynamic axes set to batch / seq_len where given."""
    size = {BATCH: batch, SEQUENCE: seq_len}
    for dim, value in size.items():
        if value is None:
            continue
        limits = {spec.shape[a] for spec in specs for a, name in spec.dynamic_axes if name == dim}
        flag = "--batch" if dim == BATCH else "--seq-len"
        if not limits:
            raise InputSpecError(
                f"{flag} {value}: the artifact was compiled for one {dim} size "
                f"({', '.join(f'{s.name} {_fmt(s.shape)}' for s in specs)})"
            )
        if not 1 <= value <= max(limits):
            raise InputSpecError(f"{flag} {value}: the artifact accepts {dim} sizes 1..{max(limits)}")
    return [replace(spec, shape=at_size(spec, size)) for spec in specs]


def at_size(spec, size: dict) -> tuple[int, ...]:
    """spec's shape with each dynamic axis set to size[its dim name] (kept where that is None)."""
    by_axis = dict(spec.dynamic_axes)
    return tuple(size.get(by_axis[a]) or d if a in by_axis else d for a, d in enumerate(spec.shape))


def check_dynamic_shapes(arrays: dict, specs, where: str) -> dict[str, int]:
    """Every input's shape against its spec, dynamic axes 1..maximum and equal across inputs;
    returns {dim name: the size given}. Raises InputSpecError with one line."""
    seen: dict[str, tuple[int, str]] = {}
    for spec in specs:
        shape = tuple(arrays[spec.name].shape)
        by_axis = dict(spec.dynamic_axes)
        if len(shape) != len(spec.shape):
            raise InputSpecError(
                f"{where}: input '{spec.name}' has shape {_fmt(shape)}, the artifact takes rank "
                f"{len(spec.shape)} ({_fmt(_accepted(spec))})"
            )
        for axis, (given, most) in enumerate(zip(shape, spec.shape)):
            if axis not in by_axis:
                if given != most:
                    raise InputSpecError(
                        f"{where}: input '{spec.name}' has shape {_fmt(shape)}, the artifact takes "
                        f"{_fmt(_accepted(spec))}"
                    )
                continue
            dim = by_axis[axis]
            if not 1 <= given <= most:
                raise InputSpecError(
                    f"{where}: input '{spec.name}' has {dim} size {given} (shape {_fmt(shape)}); "
                    f"the artifact accepts {dim} sizes 1..{most}"
                )
            if dim in seen and seen[dim][0] != given:
                raise InputSpecError(
                    f"{where}: inputs '{seen[dim][1]}' and '{spec.name}' have different {dim} "
                    f"sizes ({seen[dim][0]} and {given})"
                )
            seen[dim] = (given, spec.name)
    return {dim: size for dim, (size, _) in seen.items()}


def _accepted(spec) -> list:
    by_axis = dict(spec.dynamic_axes)
    return [f"1..{d}" if a in by_axis else d for a, d in enumerate(spec.shape)]
