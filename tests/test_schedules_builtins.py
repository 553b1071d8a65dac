"""No built-in model has a kernel without a real schedule: every kernel of every built-in, on this
machine and on an aarch64 board, is scheduled by a named default rule or a graph pass, none falls
back to the generic parallel-only schedule, and no rule raises. Compiles stop after the schedule
step (no build), so a board target needs no cross compiler."""

from __future__ import annotations

import pytest

from edgecc.frontend import BUILTIN_MODELS

TARGETS = ["host", "raspberry-pi-5"]


def _scheduled(model: str, target: str, tmp_path):
    from edgecc.context import CompileContext
    from edgecc.options import CompileOptions
    from edgecc.pipeline import import_model, load_model, lower, resolve_target, run_graph_passes, schedule

    # an empty tuning-log folder: the default rules alone must cover every kernel
    options = CompileOptions(target=target, tuning_logs=(str(tmp_path / "no-logs"),))
    ctx = CompileContext(model=model, options=options, log=lambda *_: None)
    for step in (resolve_target, load_model, import_model, run_graph_passes, lower, schedule):
        step(ctx)
    return ctx.scheduled


def _assert_every_kernel_scheduled(model, target, tmp_path):
    from edgecc.schedules.common import schedule_summary

    summary = schedule_summary(_scheduled(model, target, tmp_path))
    assert summary.kernels > 0
    assert summary.unscheduled == [], f"{model} on {target}: {summary.line()}"
    assert summary.fallbacks == [], f"{model} on {target}: only the generic rule took {summary.fallbacks}"
    assert summary.failures == {}, f"{model} on {target}: {summary.failures}"


@pytest.mark.parametrize("target", TARGETS)
def test_the_test_bert_has_no_unscheduled_kernel(target, tmp_path):
    _assert_every_kernel_scheduled("bert-tiny-test", target, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", sorted(set(BUILTIN_MODELS) - {"bert-tiny-test"}))
def test_no_built_in_model_has_an_unscheduled_kernel(model, target, tmp_path):
    _assert_every_kernel_scheduled(model, target, tmp_path)
