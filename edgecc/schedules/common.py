"""What every schedule rule shares: the schedule-source mark on a kernel, and loop/block helpers.

Every PrimFunc that leaves the schedule step says where its schedule came from in the attribute
`edgecc.schedule` ("tuned", "rule:matmul", "pass:fused-attention", "dlight", ...); a kernel
without it runs TVM's naive loops and is counted as unscheduled. A rule that raises leaves the
kernel to the next rule and records why in `edgecc.schedule_failures`, so the report can name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOURCE_ATTR = "edgecc.schedule"
FAILURES_ATTR = "edgecc.schedule_failures"
_SCHEDULED_ATTRS = ("tirx.is_scheduled", "tir.is_scheduled")
# relax OpPatternKind kOpaque: FuseOps leaves a pre-built kernel alone
OPAQUE_PATTERN = 8


def is_scheduled(func) -> bool:
    attrs = func.attrs
    return bool(attrs) and any(name in attrs and bool(attrs[name]) for name in _SCHEDULED_ATTRS)


def schedule_source(func) -> str | None:
    attrs = func.attrs
    if attrs and SOURCE_ATTR in attrs:
        return str(attrs[SOURCE_ATTR])
    return "unknown" if is_scheduled(func) else None


def mark_scheduled(func, source: str):
    return func.with_attr("tirx.is_scheduled", True).with_attr(SOURCE_ATTR, source)


def schedule_failed(func, source: str, exc: BaseException):
    """`func` unchanged but for a note that `source` failed on it, and why (first line)."""
    text = str(exc).strip().splitlines()
    reason = f"{source}: {type(exc).__name__}: {(text[-1] if text else '')[:200]}"
    previous = list(func.attrs[FAILURES_ATTR]) if func.attrs and FAILURES_ATTR in func.attrs else []
    return func.with_attr(FAILURES_ATTR, [*previous, reason])


@dataclass
class ScheduleSummary:
    """Where each kernel's schedule came from, for report.json["schedules"] and the compile log."""

    kernels: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    unscheduled: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)  # kernels only the generic rule took
    failures: dict[str, list[str]] = field(default_factory=dict)  # kernel -> rules that raised, and why

    def to_dict(self) -> dict:
        return {
            "kernels": self.kernels,
            "by_source": dict(sorted(self.by_source.items())),
            "unscheduled": self.unscheduled,
            "fallbacks": self.fallbacks,
            "failures": self.failures,
        }

    def line(self) -> str:
        parts = ", ".join(f"{count} {source}" for source, count in sorted(self.by_source.items()))
        text = f"{self.kernels} kernels: {parts or 'none'}"
        if self.unscheduled:
            text += f"; UNSCHEDULED (naive loops): {', '.join(self.unscheduled)}"
        return text


GENERIC_SOURCE = "rule:generic"


def schedule_summary(mod) -> ScheduleSummary:
    from tvm.tirx import PrimFunc

    summary = ScheduleSummary()
    for gvar, func in sorted(mod.functions.items(), key=lambda kv: kv[0].name_hint):
        if not isinstance(func, PrimFunc):
            continue
        name = gvar.name_hint
        summary.kernels += 1
        source = schedule_source(func)
        if source is None:
            summary.unscheduled.append(name)
            source = "unscheduled"
        elif source == GENERIC_SOURCE:
            summary.fallbacks.append(name)
        summary.by_source[source] = summary.by_source.get(source, 0) + 1
        if func.attrs and FAILURES_ATTR in func.attrs:
            summary.failures[name] = [str(reason) for reason in func.attrs[FAILURES_ATTR]]
    return summary


# --- loop and block helpers -------------------------------------------------------------------


def loop_extent(sch, loop) -> int | None:
    value = sch.get(loop).extent
    return int(value) if hasattr(value, "value") or isinstance(value, int) else None


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def largest_divisor(extent: int, choices) -> int:
    return next((c for c in choices if extent % c == 0), 1)


def child_blocks(sch) -> list:
    try:
        root = sch.get_sblock("root")
    except Exception:  # noqa: BLE001 - tvm raises its own error type for a missing block
        return []
    return list(sch.get_child_blocks(root))


def iter_types(sch, block) -> list[str]:
    """ "0" spatial, "2" reduction, per block iterator."""
    return [str(iv.iter_type) for iv in sch.get(block).iter_vars]


def stored_dtype(block_stmt) -> str:
    buffer = getattr(block_stmt.body, "buffer", None)
    return str(getattr(buffer, "dtype", "bool"))  # unknown: assume the unsafe case


def dividing_vector(extent: int, lanes: int) -> int:
    """The widest vector (lanes, lanes/2, ... 1) whose lane count divides `extent`."""
    vec = lanes
    while vec > 1 and extent % vec:
        vec //= 2
    return vec


def lane_partials(sch, block, lanes: int):
    """(partial block, lanes used) after splitting `block`'s innermost reduction into one partial
    result per vector lane (rfactor) on the widest vector dividing it, or None when it is too short."""
    reduce_loop = sch.get_loops(block)[-1]
    extent = loop_extent(sch, reduce_loop)
    vec = dividing_vector(extent, lanes) if extent else 1
    if vec <= 1 or extent <= vec:
        return None
    _, lane = sch.split(reduce_loop, [None, vec])
    return sch.rfactor(lane, len(sch.get_loops(block)) - 2), vec


def vectorize_lanes(sch, partial, vec: int) -> None:
    """The lane loop of a `lane_partials` block innermost and vectorised, the rest of its reduction around it."""
    *_, first, second = sch.get_loops(partial)
    lane, rest = (first, second) if loop_extent(sch, first) == vec else (second, first)
    sch.reorder(rest, lane)
    sch.vectorize(lane)


def vectorize_innermost(sch, block, vec: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    inner = loops[-1]
    extent = loop_extent(sch, inner)
    if extent and vec > 1 and extent % vec == 0:
        _, lanes_loop = sch.split(inner, [None, vec])
        sch.vectorize(lanes_loop)


def live_blocks(sch, blocks) -> list:
    """The blocks of `blocks` still in the function after inlining."""
    live = []
    for block in blocks:
        try:
            sch.get(block)
            live.append(block)
        except Exception:  # noqa: BLE001 - inlined away: tvm raises for a stale block reference
            continue
    return live


def try_inline(sch, block) -> bool:
    """compute_inline when TVM allows it (single consumer, injective); False otherwise."""
    try:
        sch.compute_inline(block)
        return True
    except Exception:  # noqa: BLE001 - tvm's ScheduleError: the block cannot be inlined, which is fine
        return False


def register_tensor_intrinsic(name: str, desc, impl) -> str:
    """Register a tensor intrinsic once per process (a second registration of a name is tvm's error)."""
    from tvm.s_tir import TensorIntrin

    try:
        TensorIntrin.register(name, desc, impl)
    except Exception:  # noqa: BLE001 - tvm's error type for "already registered" (an earlier import here)
        pass
    return name
