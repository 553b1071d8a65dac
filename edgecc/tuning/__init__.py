"""Auto-tuning with MetaSchedule, and the shared tuning logs it writes and compile reads."""

from .apply import TuningSummary, apply_tuning_records  # noqa: F401
from .tune import TuneResult, tune  # noqa: F401
