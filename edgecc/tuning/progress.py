"""The tuning progress line."""

from __future__ import annotations

from edgecc.options import TRIALS_UNDER_A_BUDGET


class ProgressBar:
    """The tuning progress line. The bar fills with trials measured ('#') and trials that failed to
    build or run ('x'), never past the total (MetaSchedule may run a batch beyond it); trials only
    submitted fill nothing, so a first round whose every candidate failed cannot look finished. The
    time left is the measured rate since the search's first batch (task extraction and compiling the
    workers excluded) times the trials still to measure, so it settles instead of growing as the
    first round's measurements arrive."""

    width = 24

    def __init__(self, total: int):
        self.total = max(total, 1)
        self.search_started: float | None = None

    def line(
        self,
        now: float,
        submitted: int,
        returned: int,
        estimate_ms: float,
        failures: int,
        budget_s: float | None,
        elapsed: float,
    ) -> str:
        """`returned`: trials whose build and run came back, `failures` of them failed."""
        if self.search_started is None:
            self.search_started = now
        measured = min(max(returned - failures, 0), self.total)
        failed = min(failures, self.total - measured)
        cells = self._cells(measured, failed, budget_s, elapsed)
        if returned > 0 and now > self.search_started:
            rate = (now - self.search_started) / returned
            left = rate * max(self.total - returned, 0)
            if budget_s is not None:
                left = min(left, max(budget_s - elapsed, 0.0))
            eta = f"~{left:.0f}s left"
        else:
            eta = "time left: after the first measurements"
        total = "" if self.total >= TRIALS_UNDER_A_BUDGET else f"/{self.total}"
        return (
            f"tuning [{cells}] {measured}{total} trials measured, {failures} failed "
            f"({submitted} submitted{', the last batch ran past the total' if returned > self.total else ''}), "
            f"est. kernels {estimate_ms:.2f} ms, {elapsed:.0f}s elapsed, {eta}"
        )

    def _cells(self, measured: int, failed: int, budget_s: float | None, elapsed: float) -> str:
        """'#' measured, 'x' failed; with a time budget, '-' for budget spent while trials are still out."""
        good = int(self.width * measured / self.total)
        bad = int(self.width * (measured + failed) / self.total) - good
        waiting = 0
        if budget_s:  # whichever runs out first
            waiting = max(int(self.width * min(elapsed / budget_s, 1.0)) - good - bad, 0)
        return "#" * good + "x" * bad + "-" * waiting + "." * (self.width - good - bad - waiting)
