"""The tuning progress line."""

from __future__ import annotations

from edgecc.options import TRIALS_UNDER_A_BUDGET


class ProgressBar:
    """The tuning progress line. The bar counts trials submitted, never past the total (MetaSchedule
    may run a batch beyond it); the time left is the measured rate since the search's first batch
    (task extraction and compiling the workers excluded) times the trials still to measure, so it
    settles instead of growing as the first round's measurements arrive."""

    width = 24

    def __init__(self, total: int):
        self.total = max(total, 1)
        self.search_started: float | None = None

    def line(
        self,
        now: float,
        submitted: int,
        measured: int,
        estimate_ms: float,
        failures: int,
        budget_s: float | None,
        elapsed: float,
    ) -> str:
        if self.search_started is None:
            self.search_started = now
        shown = min(max(submitted, measured), self.total)
        done = shown / self.total
        if budget_s:  # whichever runs out first
            done = min(max(done, elapsed / budget_s), 1.0)
        filled = int(self.width * done)
        if measured > 0 and now > self.search_started:
            rate = (now - self.search_started) / measured
            left = rate * max(self.total - measured, 0)
            if budget_s is not None:
                left = min(left, max(budget_s - elapsed, 0.0))
            eta = f"~{left:.0f}s left"
        else:
            eta = "time left: after the first measurements"
        return (
            f"tuning [{'#' * filled}{'.' * (self.width - filled)}] {shown}"
            f"{'' if self.total >= TRIALS_UNDER_A_BUDGET else f'/{self.total}'} trials "
            f"({measured} measured{', the last batch ran past the total' if measured > self.total else ''}), "
            f"est. kernels {estimate_ms:.2f} ms, failures {failures}, "
            f"{elapsed:.0f}s elapsed, {eta}"
        )
