"""Attention: one pattern (`pattern.py`), matched for fusion (`fuse_attention.py`) and for
sparsification (`rewrite_attention_sparse.py`, which emits blocks via `blocked.py`)."""
