"""Graph passes: each one `IRModule -> IRModule`, one file, a verb-noun name.

`graph_passes` is the flat list the compile pipeline runs, in order, for a target and options.
"""

from __future__ import annotations

from .fusion_steps import fusion_steps
from .precision_steps import precision_steps
from .sparsity_steps import sparsity_steps


def graph_passes(options, target) -> list[tuple[str, object]]:
    """[(name, pass)] where pass is a callable IRModule -> IRModule (a tvm Pass or a function)."""
    return [
        # sparsity first: it matches the dense attention subgraph that fuse attention would replace
        *sparsity_steps(options, target),  # before precision too: it matches the FP32 attention pattern
        *fusion_steps(options, target),  # touches no constant-weight matmul, which precision matches
        *precision_steps(options, target),
    ]
