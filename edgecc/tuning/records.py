"""The shared tuning-log format: one JSON object per line, appended atomically, merged deterministically.

Two kinds of line. A workload line holds one kernel as TVM serializes it (~40 KB), once per file.
A record line is one measured schedule: its workload's key, the schedule trace, the full target it
was measured on, the board's name, versions, when, and the measured latency.
Lines are never rewritten in place, so `git merge` of two teams' appends is clean; `merge` writes a
sorted, de-duplicated file for the cases it is not.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

LOG_SUFFIX = ".jsonl"
LOG_NAME = "records" + LOG_SUFFIX
FORMAT = "edgecc-tuning/1"
REQUIRED = ("format", "kind", "workload_key", "trace", "target", "board", "latency_s", "tvm", "edgecc", "time")
WORKLOAD_REQUIRED = ("format", "kind", "workload_key", "workload")


def target_key(tvm_target) -> str:
    """Canonical JSON of a TVM target: equal strings iff records may be shared."""
    return json.dumps(json.loads(str(tvm_target)), sort_keys=True, separators=(",", ":"))


def workload_key(workload_json) -> str:
    return hashlib.sha256(json.dumps(workload_json, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Record:
    data: dict
    source: str = ""  # file:line it came from
    workload: object = None  # the workload JSON, joined from its workload line

    @property
    def key(self) -> tuple[str, str]:
        return self.data["workload_key"], self.data["target"]

    @property
    def latency(self) -> float:
        return float(self.data["latency_s"])

    def line(self) -> str:
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"))


def make_record(workload_json, record_json, tvm_target, board: str, latency_s: float) -> Record:
    import tvm

    from edgecc import __version__

    return Record({
        "format": FORMAT,
        "kind": "record",
        "workload_key": workload_key(workload_json),
        "trace": record_json,  # TVM's TuningRecord JSON: [trace, run_secs, target, args_info]
        "target": target_key(tvm_target),
        "board": board,
        "latency_s": float(latency_s),
        "tvm": tvm.__version__,
        "edgecc": __version__,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }, workload=workload_json)


def workload_line(key: str, workload_json) -> str:
    data = {"format": FORMAT, "kind": "workload", "workload_key": key, "workload": workload_json}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass
class LogReadout:
    records: list[Record] = field(default_factory=list)
    bad_lines: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line number, why)
    files: list[Path] = field(default_factory=list)
    workloads: dict = field(default_factory=dict)  # workload key -> workload JSON


def log_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.rglob(f"*{LOG_SUFFIX}"))
    return []


def read_logs(paths) -> LogReadout:
    """Every good record; every corrupt or truncated line reported with its file and line number."""
    readout = LogReadout()
    pending = []
    for root in paths:
        for file in log_files(Path(root)):
            readout.files.append(file)
            with open(file, "rb") as handle:
                for number, raw in enumerate(handle, 1):
                    text = raw.decode("utf-8", errors="replace").strip()
                    if not text:
                        continue
                    why = _problem(text, raw)
                    if why:
                        readout.bad_lines.append((str(file), number, why))
                        continue
                    data = json.loads(text)
                    if data["kind"] == "workload":
                        readout.workloads[data["workload_key"]] = data["workload"]
                    else:
                        pending.append(Record(data, f"{file}:{number}"))
    for record in pending:
        if record.data["workload_key"] not in readout.workloads:
            file, number = record.source.rsplit(":", 1)
            readout.bad_lines.append((file, int(number), "its workload line is missing"))
            continue
        record.workload = readout.workloads[record.data["workload_key"]]
        readout.records.append(record)
    return readout


def _problem(text: str, raw: bytes) -> str | None:
    if not raw.endswith(b"\n"):
        return "truncated (no end of line: an interrupted write)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(data, dict):
        return "not a record object"
    if data.get("format") != FORMAT:
        return f"unknown format {data.get('format')!r}"
    required = WORKLOAD_REQUIRED if data.get("kind") == "workload" else REQUIRED
    missing = [k for k in required if k not in data]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    if data["kind"] == "workload" and data["workload_key"] != workload_key(data["workload"]):
        return "workload does not match its key (edited or corrupted)"
    if data["kind"] not in ("workload", "record"):
        return f"unknown line kind {data['kind']!r}"
    return None


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_KNOWN_WORKLOADS: dict[Path, set] = {}


def _workload_keys_in(path: Path) -> set:
    keys = set()
    if path.exists():
        with open(path, "rb") as handle:
            for raw in handle:
                if raw.startswith(b'{') and b'"kind":"workload"' in raw:
                    try:
                        keys.add(json.loads(raw)["workload_key"])
                    except (json.JSONDecodeError, KeyError):
                        pass
    return keys


def append_records(path: Path, records: list[Record]) -> None:
    """Whole lines under an exclusive lock, O_APPEND and fsync: two tuners can share one log, and a
    kill -9 can at worst leave one truncated last line, which readers skip and report. A record's
    workload line is written first, once per file."""
    if not records:
        return
    path = Path(path)
    with _locked(path):
        known = _KNOWN_WORKLOADS.get(path)
        if known is None or not path.exists():
            known = _KNOWN_WORKLOADS[path] = _workload_keys_in(path)
        lines = []
        for record in records:
            key = record.data["workload_key"]
            if key not in known and record.workload is not None:
                lines.append(workload_line(key, record.workload) + "\n")
                known.add(key)
            lines.append(record.line() + "\n")
        needs_newline = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if needs_newline:  # seal a line a killed writer left half-written
                os.write(fd, b"\n")
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def best_records(records: list[Record]) -> dict[tuple[str, str], Record]:
    """The fastest record per (workload, target)."""
    best: dict[tuple[str, str], Record] = {}
    for record in records:
        current = best.get(record.key)
        if current is None or record.latency < current.latency:
            best[record.key] = record
    return best


def write_merged(path: Path, records: list[Record]) -> None:
    """Workloads then records, each sorted by key, one best record per (workload, target);
    replaced atomically."""
    from edgecc.atomic import write_text_atomic

    best = best_records(records)
    workloads = {r.data["workload_key"]: r.workload for r in best.values()}
    lines = [workload_line(key, workloads[key]) + "\n" for key in sorted(workloads)]
    lines += [best[k].line() + "\n" for k in sorted(best)]
    path = Path(path)
    with _locked(path):
        write_text_atomic(path, "".join(lines))
        _KNOWN_WORKLOADS.pop(path, None)


def drop_bad_lines(path: Path) -> int:
    """Rewrite one log without its corrupt or truncated lines, good lines unchanged and in order;
    under the log's lock and replaced atomically, so a concurrent tuner loses nothing. Returns
    how many lines were dropped."""
    from edgecc.atomic import write_text_atomic

    path = Path(path)
    with _locked(path):
        kept, dropped = [], 0
        with open(path, "rb") as handle:
            for raw in handle:
                text = raw.decode("utf-8", errors="replace").strip()
                if not text:
                    continue
                if _problem(text, raw):
                    dropped += 1
                else:
                    kept.append(text + "\n")
        if dropped:
            write_text_atomic(path, "".join(kept))
            _KNOWN_WORKLOADS.pop(path, None)
    return dropped
