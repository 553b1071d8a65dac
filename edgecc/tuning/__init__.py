"""Auto-tuning with MetaSchedule, and the shared tuning logs it writes and compile reads.

- `tune(lowered_mod, target, log_dir, trials, budget_s=None, session=None, progress=True)`:
  XGBoost-guided search, candidates built in-process (no per-batch worker imports), measured
  locally or on a board (`session={"rpc": ...}` or `{"tracker": ..., "key": ...}`), every measured
  schedule appended to `log_dir/records.jsonl`; resumes from the records already there.
- `apply_tuning_records(lowered_mod, target, log_dirs)`: schedules the kernels that have records
  for exactly this target; the backend's default schedule handles the rest.
"""

from edgecc.tuning.apply import TuningSummary, apply_tuning_records  # noqa: F401
from edgecc.tuning.tune import TuneResult, tune  # noqa: F401
