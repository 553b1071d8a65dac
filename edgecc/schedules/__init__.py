"""Default schedules for kernels that no tuning record covers: one module per kernel family.

TVM's naive lowering runs every kernel as scalar loops on one core (TinyBERT-4 at seq 128: ~480 ms
against ONNX Runtime's ~7 ms here). Each family module holds one rule (see `rule.ScheduleRule`);
`apply_cpu_default_schedules` gives every unscheduled kernel to the first rule that matches it,
and to the next one when a rule raises (the failure is kept on the kernel and reported). Every
kernel leaves marked with its schedule's source (`common.schedule_summary` counts them).

  matmul_amx.py      BF16 / INT8 dense kernels on Intel AMX tiles (tdpbf16ps, tdpbusd); first, and a
                     kernel its tiles do not fit goes on to matmul_dot.py
  matmul_mmla.py     INT8 dense kernels on aarch64 i8mm `smmla` (2 x 2 x 8 tiles); before matmul_dot.py,
                     which takes the kernels its tile does not fit (on sdot)
  matmul_dot.py      INT8 / BF16 dense kernels on the CPU's dot-product instruction (vpdpbusd,
                     vpmaddubsw, sdot, vdpbf16ps); before matmul.py, which would take them too
  matmul_fp16.py     FP16 dense kernels on aarch64 +fullfp16 (fmla .8h, FP16 accumulators in K
                     blocks); before matmul.py
  conv.py            NHWC convolutions: KxK / 1x1 / grouped as a register-tiled implicit GEMM over
                     packed weight panels, depthwise vectorised over channels
  pooling.py         pooling windows, global average pooling and the reductions around it
  matmul.py          matmuls + fused epilogues: register tile over packed weight panels
  quantize_rows.py   run-time per-row INT8 quantization / BF16 rounding of a dense layer's input
                     (built pre-scheduled by passes/precision)
  reductions.py      softmax / LayerNorm-like row reductions: one parallel loop over rows
  elementwise.py     reshape/transpose/activation chains, and the generic last resort
  gather.py          embedding lookups
  attention.py       the fused attention kernel (built pre-scheduled by passes/attention)
  folded_matmul.py   matmuls reading transposed operands (built pre-scheduled by a pass)
  weight_packing.py  constant weights repacked into the layout the schedules read
  gpu.py             dlight's rules for CUDA and Metal
"""

from __future__ import annotations

from edgecc.schedules.common import (
    child_blocks,
    is_scheduled,
    mark_scheduled,
    schedule_failed,
    schedule_summary,  # noqa: F401 - the pipeline's counter
)
from edgecc.schedules.conv import Conv2dNHWCRule, DepthwiseConv2dNHWCRule
from edgecc.schedules.elementwise import ElementwiseRule, GenericRule
from edgecc.schedules.gather import GatherRule
from edgecc.schedules.matmul import MatmulRule
from edgecc.schedules.matmul_amx import AmxMatmulRule
from edgecc.schedules.matmul_dot import DotMatmulRule
from edgecc.schedules.matmul_fp16 import Fp16MatmulRule
from edgecc.schedules.matmul_mmla import MmlaMatmulRule
from edgecc.schedules.parameters import vector_lanes
from edgecc.schedules.pooling import ChannelVectorReductionRule, Pool2dNHWCRule, SingleRowReductionRule
from edgecc.schedules.reductions import RowReductionRule
from edgecc.schedules.rule import KernelView

# First match wins; GenericRule takes anything and is counted as a fallback.
CPU_RULES = (
    AmxMatmulRule(),
    MmlaMatmulRule(),
    DotMatmulRule(),
    Fp16MatmulRule(),
    Conv2dNHWCRule(),
    DepthwiseConv2dNHWCRule(),
    Pool2dNHWCRule(),
    MatmulRule(),
    RowReductionRule(),
    ChannelVectorReductionRule(),
    SingleRowReductionRule(),
    GatherRule(),
    ElementwiseRule(),
    GenericRule(),
)


def apply_cpu_default_schedules(mod, target, rules=CPU_RULES):
    from tvm.tirx import PrimFunc

    from edgecc.schedules.weight_packing import PACKED_ATTR, constant_parameters, pack_weight_arguments

    lanes = vector_lanes(target)
    constants = constant_parameters(mod)
    updates = {}
    for gvar, func in mod.functions.items():
        if not isinstance(func, PrimFunc) or is_scheduled(func):
            continue
        name = gvar.name_hint
        updates[gvar] = schedule_kernel(
            func, name, lanes, target, frozenset(constants.get(name, ())), rules, packed_attr=PACKED_ATTR
        )
    if updates:
        mod = mod.clone()  # callers keep their module; item assignment would change it in place
        for gvar, func in updates.items():
            mod[gvar] = func
    return pack_weight_arguments(mod)


def schedule_kernel(
    func,
    name: str,
    lanes: int,
    target=None,
    constant_inputs=frozenset(),
    rules=CPU_RULES,
    packed_attr: str = "edgecc.packed_weights",
):
    """`func` scheduled by the first rule that matches and succeeds; unchanged (and so counted as
    unscheduled) when none does. Failures are recorded on the kernel, never swallowed."""
    sch, rule, packed, func = first_fitting_rule(func, name, lanes, target, constant_inputs, rules)
    if sch is None:
        return func
    from edgecc.schedules.prefetch import insert_panel_prefetches

    scheduled = mark_scheduled(
        insert_panel_prefetches(sch.mod["main"]), f"rule:{rule.name}"
    )  # keeps earlier failure notes
    return scheduled.with_attr(packed_attr, packed) if packed else scheduled


def first_fitting_rule(func, name: str, lanes: int, target=None, constant_inputs=frozenset(), rules=CPU_RULES):
    """(schedule, rule, packed weights, func): the first rule that matches `func` and succeeds, its
    traced schedule and the weights it packed, or (None, None, None, func); `func` carries a note
    of each rule that raised."""
    from tvm import s_tir

    for rule in rules:
        sch = s_tir.Schedule(func)
        kernel = KernelView(name, sch, child_blocks(sch), lanes, target, constant_inputs)
        if not kernel.blocks or not rule.matches(kernel):
            continue
        try:
            packed = rule.apply(kernel)
        except Exception as exc:  # noqa: BLE001 - tvm's ScheduleError and friends: try the next rule, and say so
            func = schedule_failed(func, f"rule:{rule.name}", exc)
            continue
        return sch, rule, packed, func
    return None, None, None, func


def cpu_kernel_schedule(func, name: str, target, constant_inputs=frozenset()):
    """One kernel's default CPU schedule with its trace, or None: what tuning measures first."""
    sch, *_ = first_fitting_rule(func, name, vector_lanes(target), target, frozenset(constant_inputs))
    return sch
