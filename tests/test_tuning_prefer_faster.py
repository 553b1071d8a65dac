"""A tuned kernel is kept only when it measures faster than the default schedule."""

from __future__ import annotations

import tvm
from tvm import te

from edgecc.schedules import apply_cpu_default_schedules
from edgecc.targets import load_target
from edgecc.tuning.prefer_faster import prefer_faster_schedules


def _dense_module(m=64, k=256, n=256):
    a, b = te.placeholder((1, m, k), name="a"), te.placeholder((k, n), name="b")
    r = te.reduce_axis((0, k), name="r")
    c = te.compute((1, m, n), lambda z, i, j: te.sum(a[z, i, r] * b[r, j], axis=r), name="matmul")
    return tvm.IRModule({"dense": te.create_prim_func([a, b, c]).with_attr("global_symbol", "dense")})


def test_a_slow_tuned_kernel_gives_way_to_the_default_schedule():
    target = load_target("host")
    plain = _dense_module()
    slow_tuned = plain.clone()
    slow_tuned["dense"] = plain["dense"].with_attr("tirx.is_scheduled", True)  # scalar loops, one core
    mod, comparison = prefer_faster_schedules(slow_tuned, plain, target, apply_cpu_default_schedules, ["dense"])
    [choice] = comparison.choices
    assert choice.kept == "default" and choice.default_us < choice.tuned_us
    assert "T.parallel" in mod["dense"].script()
    assert comparison.to_dict()["kept_default"] == ["dense"]


def test_a_fast_tuned_kernel_is_kept():
    target = load_target("host")
    plain = _dense_module()
    fast = apply_cpu_default_schedules(plain, target)  # stands in for a tuned schedule
    naive_default = lambda mod, _target: mod  # noqa: E731  (a backend whose default is naive)
    mod, comparison = prefer_faster_schedules(fast, plain, target, naive_default, ["dense"])
    assert comparison.choices[0].kept == "tuned" and mod["dense"].script() == fast["dense"].script()
