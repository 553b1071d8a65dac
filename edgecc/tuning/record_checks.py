"""What makes a tuning-log line usable: checked on every read, so one bad line (torn by a crash,
edited by hand, or valid JSON with a wrong type) is reported with its file:line and skipped, never
chosen as a best record or handed to TVM to fail a compile later."""

from __future__ import annotations

import hashlib
import json
import math

from edgecc.bounded_json import nesting_depth
from edgecc.errors import error_line

FORMAT = "edgecc-tuning/1"
# a record of a kernel's default schedule, measured as tuning's first candidate (default_baseline.py):
# its latency is the bar a tuned record must beat; its trace is empty and never applied
DEFAULT_SCHEDULE = "default"
SCHEDULES = ("tuned", DEFAULT_SCHEDULE)
REQUIRED = ("format", "kind", "workload_key", "trace", "target", "board", "latency_s", "tvm", "edgecc", "time")
WORKLOAD_REQUIRED = ("format", "kind", "workload_key", "workload")
# A workload line is ~40-110 KB (TVM's serialized kernel); a longer line is not one edgecc wrote, and
# reading it whole could take all memory (a file with no newline at all)
MAX_LINE_BYTES = 16 << 20
MAX_DEPTH = 64  # a record nests 7 levels (its trace's instructions); deeper is no line edgecc wrote
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (not a line edgecc wrote)"


def workload_key(workload_json) -> str:
    return hashlib.sha256(json.dumps(workload_json, sort_keys=True).encode()).hexdigest()[:24]


def line_problem(text: str, raw: bytes) -> str | None:
    """Why a line cannot be used (None when it can): torn, not JSON, or JSON that is not a usable line."""
    if len(raw) > MAX_LINE_BYTES:
        return f"longer than {MAX_LINE_BYTES >> 20} MiB (not a line edgecc wrote)"
    if not raw.endswith(b"\n"):
        return "truncated (no end of line: an interrupted write)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return TOO_DEEP
    if nesting_depth(text) > MAX_DEPTH:  # TVM's parser and json.dumps recurse as deep as the data goes
        return TOO_DEEP
    if not isinstance(data, dict):
        return "not a record object"
    if data.get("format") != FORMAT:
        return f"unknown format {data.get('format')!r}"
    if data.get("kind") not in ("workload", "record"):
        return f"unknown line kind {data.get('kind')!r}"
    required = WORKLOAD_REQUIRED if data["kind"] == "workload" else REQUIRED
    missing = [k for k in required if k not in data]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    if not isinstance(data["workload_key"], str) or not data["workload_key"]:
        return "workload_key must be a non-empty string"
    if data["kind"] == "workload":
        workload = data["workload"]
        if not (isinstance(workload, list) and len(workload) == 2 and all(isinstance(p, str) for p in workload)):
            return "workload must be TVM's [structural hash, module] pair of strings"
        if data["workload_key"] != workload_key(workload):
            return "workload does not match its key (edited or corrupted)"
        return None
    return _record_problem(data)


def _record_problem(data: dict) -> str | None:
    latency = data["latency_s"]
    if isinstance(latency, bool) or not isinstance(latency, (int, float)):
        return f"latency_s must be a number of seconds, not {type(latency).__name__} {latency!r}"[:200]
    if not math.isfinite(latency) or latency <= 0:
        return f"latency_s must be a finite number of seconds > 0, not {latency!r}"
    for name in ("board", "tvm", "edgecc", "time"):
        if not isinstance(data[name], str):
            return f"{name} must be a string, not {type(data[name]).__name__}"
    if not isinstance(data["target"], str):
        return f"target must be a JSON string, not {type(data['target']).__name__}"
    try:
        target = json.loads(data["target"])
    except json.JSONDecodeError:
        return "target is not JSON (a TVM target's JSON object)"
    except RecursionError:
        return f"target is {TOO_DEEP}"
    if not isinstance(target, dict) or not isinstance(target.get("kind"), str):
        return "target must be a TVM target's JSON object with a 'kind'"
    if data.get("schedule", "tuned") not in SCHEDULES:
        return f"schedule must be 'tuned' or 'default', not {data.get('schedule')!r}"[:200]
    trace = data["trace"]
    if not (isinstance(trace, list) and len(trace) == 4 and isinstance(trace[0], list)):
        return "trace must be TVM's tuning record [trace, run_secs, target, args_info]"
    return None


def drop_unparseable_schedules(readout) -> None:
    """Parse each workload and trace with TVM, as a compile would: a line TVM cannot read is a bad
    line here (with file:line), not a failed compile later."""
    from tvm.s_tir import meta_schedule as ms

    workloads: dict[str, object] = {}
    bad_workloads: dict[str, str] = {}
    good = []
    for record in readout.records:
        key = record.data["workload_key"]
        if key not in workloads and key not in bad_workloads:
            try:
                workloads[key] = ms.database.Workload.from_json(record.workload)
            except Exception as exc:  # noqa: BLE001 - TVM raises several types for unreadable JSON
                why = error_line(exc, last=True, limit=160)
                bad_workloads[key] = f"its workload line cannot be read by TVM ({why})"
        why = bad_workloads.get(key)
        if why is None and not record.is_default:  # a default's trace is never replayed
            try:
                ms.database.TuningRecord.from_json(record.data["trace"], workloads[key])
            except Exception as exc:  # noqa: BLE001 - TVM raises several types for unreadable JSON
                why = f"its schedule trace cannot be read by TVM ({error_line(exc, last=True, limit=160)})"
        if why is None:
            good.append(record)
        else:
            file, number = record.source.rsplit(":", 1)
            readout.bad_lines.append((file, int(number), why))
    readout.records = good
    readout.bad_lines.sort(key=lambda bad: (bad[0], bad[1]))
