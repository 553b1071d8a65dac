"""The sparsity passes the pipeline runs for given options and target.

--sparse-attention grammar (comma-separated key=value, no spaces needed):
    window=W[,global=G]                  sliding window: blocks of W tokens attend to their own
                                         block and one block on each side (every key within W
                                         positions is kept), plus G global tokens
    block=B[,neighbours=N][,global=G]    block-sparse: blocks of B tokens attend to their own block
                                         and N blocks on each side (default 1), plus G global tokens
Global tokens are the first G positions ([CLS] first): they attend to, and are attended by, all.
"""

from __future__ import annotations

from ..errors import EdgeccError
from .rewrite_attention_sparse import SparsePattern, rewrite_attention_sparse

_KEYS = {"window", "block", "neighbours", "global"}


def parse_sparse_attention(text: str) -> SparsePattern:
    def fail(why: str):
        raise EdgeccError(f"bad --sparse-attention '{text}': {why}; expected window=W[,global=G] or "
                          f"block=B[,neighbours=N][,global=G]")

    values: dict[str, int] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if "=" not in part:
            fail(f"'{part}' is not key=value")
        key, _, raw = (s.strip() for s in part.partition("="))
        if key not in _KEYS:
            fail(f"unknown key '{key}'")
        if key in values:
            fail(f"'{key}' given twice")
        try:
            values[key] = int(raw)
        except ValueError:
            fail(f"{key} must be an integer, not '{raw}'")
        if values[key] < (0 if key in ("global", "neighbours") else 1):
            fail(f"{key} must be {'>= 0' if key in ('global', 'neighbours') else 'positive'}")
    if ("window" in values) == ("block" in values):
        fail("give exactly one of window= or block=")
    if "window" in values:
        if "neighbours" in values:
            fail("neighbours= goes with block=, not window=")
        return SparsePattern(block=values["window"], neighbours=1, global_tokens=values.get("global", 0))
    return SparsePattern(block=values["block"], neighbours=values.get("neighbours", 1),
                         global_tokens=values.get("global", 0))


class RewriteAttentionSparse:
    """The step; what it rewrote (count, attention FLOPs before/after) goes to options.extra["sparse_attention"]."""

    def __init__(self, pattern: SparsePattern, options=None):
        self.pattern = pattern
        self.options = options

    def __call__(self, mod):
        summary: dict = {}
        result = rewrite_attention_sparse(mod, self.pattern, summary)
        extra = getattr(self.options, "extra", None)
        if isinstance(extra, dict):
            extra["sparse_attention"] = summary
        return result


def sparsity_steps(options, target) -> list[tuple[str, object]]:
    text = getattr(options, "sparse_attention", None)
    if not text:
        return []
    pattern = parse_sparse_attention(text)
    return [(f"rewrite attention sparse ({text})", RewriteAttentionSparse(pattern, options))]
