"""Which keys a sparse attention keeps, and the --sparse-attention grammar that names it.

    window=W[,global=G]                  sliding window: blocks of W tokens attend to their own
                                         block and one block on each side (every key within W
                                         positions is kept), plus G global tokens
    block=B[,neighbours=N][,global=G]    block-sparse: blocks of B tokens attend to their own block
                                         and N blocks on each side (default 1), plus G global tokens
Global tokens are the first G positions ([CLS] first): they attend to, and are attended by, all.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecc.errors import EdgeccError

MASKED = -1e30  # the additive bias of a key a sparse attention drops
_KEYS = {"window", "block", "neighbours", "global"}


@dataclass(frozen=True)
class SparsePattern:
    block: int
    neighbours: int = 1
    global_tokens: int = 0

    @property
    def keys_per_query(self) -> int:
        return self.global_tokens + (2 * self.neighbours + 1) * self.block

    def attention_flops(self, batch_heads: int, seq: int, head_dim: int) -> dict:
        """Multiply-adds x2 of the two attention matmuls, dense vs this pattern."""
        dense = 4 * batch_heads * seq * seq * head_dim
        kept = min(self.keys_per_query, seq)
        sparse = 4 * batch_heads * (seq * kept + self.global_tokens * seq) * head_dim
        return {"dense": dense, "sparse": sparse}


def parse_sparse_attention(text: str) -> SparsePattern:
    def fail(why: str):
        raise EdgeccError(
            f"bad --sparse-attention '{text}': {why}; expected window=W[,global=G] or block=B[,neighbours=N][,global=G]"
        )

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
    return SparsePattern(
        block=values["block"], neighbours=values.get("neighbours", 1), global_tokens=values.get("global", 0)
    )
