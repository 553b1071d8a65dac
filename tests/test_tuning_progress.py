"""The tuning progress line never passes its total and its time estimate settles; `logs show` names
each tuned kernel by what it computes, its shapes and dtypes."""

from __future__ import annotations

import re

from click.testing import CliRunner

from edgecc.cli import main
from edgecc.tuning.progress import ProgressBar


def _left(line: str) -> float:
    return float(re.search(r"~(\d+)s left", line).group(1))


def test_the_bar_never_passes_its_total_and_the_estimate_converges():
    bar = ProgressBar(32)
    # MetaSchedule submits a whole first round before any measurement joins, then batches of 8,
    # and may run a batch past the total; each trial takes 0.5 s once the search has started.
    lines = [bar.line(100.0, 32, 0, 0.0, 0, None, 10.0)]
    for measured in range(8, 41, 8):
        now = 100.0 + 0.5 * measured
        lines.append(bar.line(now, min(measured + 8, 40), measured, 1.0, 0, None, now - 90.0))
    counts = [tuple(map(int, re.search(r"\] (\d+)/(\d+) trials measured", line).groups())) for line in lines]
    assert all(done <= total == 32 for done, total in counts)
    assert "after the first measurements" in lines[0]
    estimates = [_left(line) for line in lines[1:]]
    assert estimates == sorted(estimates, reverse=True) and estimates[-1] == 0  # falls steadily to zero
    assert abs(estimates[0] - 0.5 * (32 - 8)) < 1  # the measured rate times the trials left
    assert "the last batch ran past the total" in lines[-1]


def test_the_bar_fills_with_measured_trials_and_says_how_many_failed():
    bar = ProgressBar(32)
    submitted_only = bar.line(100.0, 32, 0, 0.0, 0, None, 10.0)
    assert "[" + "." * 24 + "] 0/32 trials measured, 0 failed (32 submitted)" in submitted_only
    all_failed = bar.line(110.0, 32, 32, 0.0, 32, None, 20.0)
    assert "[" + "x" * 24 + "] 0/32 trials measured, 32 failed" in all_failed
    half = bar.line(120.0, 32, 16, 1.0, 4, None, 30.0)
    assert "[" + "#" * 9 + "xxx" + "." * 12 + "] 12/32 trials measured, 4 failed" in half


def test_a_budget_caps_the_estimate():
    bar = ProgressBar(1000)
    bar.line(0.0, 8, 0, 0.0, 0, 60.0, 0.0)
    assert _left(bar.line(10.0, 16, 8, 1.0, 0, 60.0, 20.0)) == 40  # 1.25 s/trial x 992 capped by 40 s of budget


def test_logs_show_names_kernels_by_shape_and_dtype(tuned_dense):
    _, logs = tuned_dense
    result = CliRunner().invoke(main, ["logs", "show", str(logs)])
    assert result.exit_code == 0, result.output
    kernel_lines = [line for line in result.output.splitlines() if line.strip().startswith("best")]
    assert kernel_lines and "32x64 f32, 64x48 f32" in kernel_lines[0] and "-> 32x48 f32" in kernel_lines[0]
    assert "matmul" in kernel_lines[0] or "T_matmul" in kernel_lines[0]
