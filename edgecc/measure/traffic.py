"""What one call of a kernel (a scheduled PrimFunc) touches in memory, read from its TIR.

Bytes: the footprint of every argument buffer, each element counted once: the bounding box of the
indices the kernel's loads (reads) and stores (writes) can reach, over the ranges of the loops
around them. A gather (`table[ids[i], j]`) reaches at most as many rows as it reads indices, not
the whole table; a broadcast operand counts its own size once; a packed weight counts once. An
output counts as written once, even where a reduction reads back its own partial sums. Buffers
the kernel allocates for itself are not memory traffic. This is the compulsory traffic, the least
a kernel can move; a kernel whose data stays in cache can move it faster than DRAM allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecc.measure.counting import _children, _extent


@dataclass
class _Footprint:
    """The union of a buffer's accesses: per dimension an index interval, or a count of gathered
    positions for a dimension indexed by data (another buffer's values)."""

    shape: tuple[int, ...]
    low: list = field(default_factory=list)
    high: list = field(default_factory=list)
    gathered: list = field(default_factory=list)

    def add(self, dims: list[tuple[int, int] | int]) -> None:
        if not self.low:
            self.low, self.high, self.gathered = [None] * len(dims), [None] * len(dims), [0] * len(dims)
        for axis, dim in enumerate(dims):
            if isinstance(dim, tuple):
                lo, hi = dim
                self.low[axis] = lo if self.low[axis] is None else min(self.low[axis], lo)
                self.high[axis] = hi if self.high[axis] is None else max(self.high[axis], hi)
            else:
                self.gathered[axis] = max(self.gathered[axis], dim)

    def elements(self) -> int:
        total = 1
        for axis, size in enumerate(self.shape):
            span = 0
            if self.low[axis] is not None:
                span = max(0, min(self.high[axis], size - 1) - max(self.low[axis], 0) + 1)
            total *= min(size, max(span, self.gathered[axis]))
        return total


@dataclass(frozen=True)
class BufferTraffic:
    name: str
    bytes_read: int
    bytes_written: int
    full_bytes: int  # the whole argument buffer
    gathered: bool  # indexed by data: the footprint counts gathered rows, not the whole buffer


@dataclass(frozen=True)
class KernelTraffic:
    buffers: tuple[BufferTraffic, ...]

    @property
    def bytes_read(self) -> int:
        return sum(b.bytes_read for b in self.buffers)

    @property
    def bytes_written(self) -> int:
        return sum(b.bytes_written for b in self.buffers)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def argument_bytes(self) -> int:
        """Every argument buffer read or written once whole: what report.json v1 called `bytes`."""
        return sum(b.full_bytes for b in self.buffers)


def _itemsize(dtype: str) -> int:
    base = str(dtype).split("x")[0]
    if base == "bool":
        return 1
    return max(1, np.dtype(base.replace("bfloat16", "uint16")).itemsize)


class _AccessWalker:
    """Collects the footprint of every argument buffer of one PrimFunc."""

    def __init__(self, func):
        import tvm.sym

        self.analyzer = tvm.sym.Analyzer()
        self.params = {}
        for param in func.params:
            ty = getattr(param, "ty", None)
            if ty is not None and hasattr(ty, "shape"):
                self.params[param] = (tuple(_extent(d) for d in ty.shape), str(ty.dtype))
        self.reads: dict = {}
        self.writes: dict = {}
        self.gathered: set = set()
        self.aliases: list = []  # (alias var, param, region): a tensorized block's match_buffer views of a param

    def _param(self, var):
        for param in self.params:
            if param.same_as(var):
                return param
        return None

    def _dims(self, param, indices) -> list:
        import tvm

        dims = []
        for index in indices:
            loads = self._loads_in(index)
            if loads:
                # indexed by data: at most as many positions as index elements read
                self.gathered.add(param)
                positions = 1
                for load in loads:
                    positions *= max(1, self._load_elements(load))
                dims.append(positions)
                continue
            lo, hi = self._bound(index)
            if isinstance(index, tvm.ir.expr.Expr) and (lo < -(1 << 40) or hi > (1 << 40)):
                lo, hi = 0, 1 << 40  # unbounded: the whole dimension (capped by its size)
            dims.append((lo, hi))
        return dims

    def _load_elements(self, load) -> int:
        elements = 1
        for index in load.indices:
            if self._loads_in(index):
                return 1 << 40
            low, high = self._bound(index)
            elements *= max(1, high - low + 1)
        return elements

    @staticmethod
    def _loads_in(expr) -> list:
        import tvm

        found, pending = [], [expr]
        while pending:
            node = pending.pop()
            if isinstance(node, tvm.ir.expr.TensorLoad):
                found.append(node)
                continue
            pending.extend(_children(node))
        return found

    def _record(self, table: dict, var, indices) -> None:
        param = self._param(var)
        if param is not None:
            footprint = table.setdefault(param, _Footprint(self.params[param][0]))
            footprint.add(self._dims(param, indices))
            return
        for alias, source, region in self.aliases:  # an access through a view covers the view's region
            if alias.same_as(var):
                footprint = table.setdefault(source, _Footprint(self.params[source][0]))
                footprint.add([self._range(r) for r in region])
                return

    def _range(self, extent_range) -> tuple[int, int]:
        low = self.analyzer.const_int_bound(extent_range.min)
        high = self.analyzer.const_int_bound(extent_range.min + extent_range.extent - 1)
        return int(low.min_value), int(high.max_value)

    def _bound(self, index) -> tuple[int, int]:
        from tvm import tirx

        if isinstance(index, tirx.Ramp):  # a vector of indices: base .. base + stride x (lanes - 1)
            lanes = int(index.lanes) if str(index.lanes).isdigit() else 1
            low = self.analyzer.const_int_bound(index.base)
            high = self.analyzer.const_int_bound(index.base + index.stride * (lanes - 1))
            return int(low.min_value), int(high.max_value)
        bound = self.analyzer.const_int_bound(index)
        return int(bound.min_value), int(bound.max_value)

    def expr(self, expr) -> None:
        import tvm

        pending = [expr]
        while pending:
            node = pending.pop()
            if isinstance(node, tvm.ir.expr.TensorLoad):
                self._record(self.reads, node.source, node.indices)
                pending.extend(node.indices)
                continue
            pending.extend(_children(node))

    def stmt(self, stmt) -> None:
        import tvm
        from tvm import s_tir, tirx

        if isinstance(stmt, tirx.For):
            extent = _extent(stmt.extent)
            self.analyzer.bind(
                stmt.loop_var, tvm.ir.Range.from_min_extent(stmt.min, max(extent, 1)), allow_override=True
            )
            self.stmt(stmt.body)
        elif isinstance(stmt, tirx.BufferStore):
            self._record(self.writes, stmt.buffer, stmt.indices)
            self.expr(stmt.value)
            for index in stmt.indices:
                self.expr(index)
        elif isinstance(stmt, tirx.SeqStmt):
            for s in stmt.seq:
                self.stmt(s)
        elif isinstance(stmt, s_tir.SBlockRealize):
            for iter_var, value in zip(stmt.block.iter_vars, stmt.iter_values):
                self.analyzer.bind(iter_var.var, value, allow_override=True)
            self.stmt(stmt.block)
        elif isinstance(stmt, s_tir.SBlock):
            for match in stmt.match_buffers or ():
                source = self._param(match.source.source)
                if source is not None:
                    self.aliases.append((match.buffer, source, list(match.source.region)))
            if stmt.init is not None:
                self.stmt(stmt.init)
            self.stmt(stmt.body)
        elif isinstance(stmt, tirx.IfThenElse):
            self.stmt(stmt.then_case)
            if stmt.else_case is not None:
                self.stmt(stmt.else_case)
        else:
            value = getattr(stmt, "value", None)
            if isinstance(value, tvm.ir.expr.Expr):
                self.expr(value)
            body = getattr(stmt, "body", None)
            if body is not None:
                self.stmt(body)

    def traffic(self) -> KernelTraffic:
        buffers = []
        for param, (shape, dtype) in self.params.items():
            size = _itemsize(dtype)
            full = int(np.prod(shape, dtype=np.int64)) * size
            written = self.writes[param].elements() * size if param in self.writes else 0
            # an output's own partial results read back (reductions) are not extra traffic
            read = self.reads[param].elements() * size if param in self.reads and not written else 0
            buffers.append(
                BufferTraffic(
                    str(getattr(param, "name", param)),
                    min(read, full),
                    min(written, full),
                    full,
                    param in self.gathered,
                )
            )
        return KernelTraffic(tuple(buffers))


def kernel_traffic(func) -> KernelTraffic:
    """The bytes one call of a PrimFunc reads and writes in its argument buffers (see the module text)."""
    walker = _AccessWalker(func)
    walker.stmt(func.body)
    return walker.traffic()


def count_bytes(func) -> int:
    """Bytes one call of a PrimFunc moves: its argument buffers' footprints, read plus written."""
    return kernel_traffic(func).bytes
