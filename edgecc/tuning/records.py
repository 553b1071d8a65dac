"""The shared tuning-log format: one JSON object per line, appended atomically, merged deterministically.

Two kinds of line. A workload line holds one kernel as TVM serializes it (~40 KB), once per file.
A record line is one measured schedule: its workload's key, the schedule trace, the full target it
was measured on, the board's name, versions, when, and the measured latency.
Lines are never rewritten in place, so `git merge` of two teams' appends is clean; `merge` writes a
sorted, de-duplicated file for the cases it is not. What makes a line usable: `record_checks.py`.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import math
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edgecc.errors import EdgeccError
from edgecc.tuning.record_checks import (
    DEFAULT_SCHEDULE,
    FORMAT,
    MAX_LINE_BYTES,
    drop_unparseable_schedules,
    line_problem,
    workload_key,
)

LOG_SUFFIX = ".jsonl"
LOG_NAME = "records" + LOG_SUFFIX


def target_key(tvm_target) -> str:
    """Canonical JSON of a TVM target: equal strings iff records may be shared."""
    return json.dumps(json.loads(str(tvm_target)), sort_keys=True, separators=(",", ":"))


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

    @property
    def is_default(self) -> bool:
        return self.data.get("schedule") == DEFAULT_SCHEDULE

    def line(self) -> str:
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"))


def make_record(
    workload_json, record_json, tvm_target, board: str, latency_s: float, schedule: str | None = None
) -> Record:
    import tvm

    from edgecc import __version__

    return Record(
        {
            **({"schedule": schedule} if schedule else {}),
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
        },
        workload=workload_json,
    )


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
    """The logs in a folder: every *.jsonl below it, except hidden files and folders, which hold other
    tools' data and the half-written temporary file a killed `logs merge` leaves (see _replace_log)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            file
            for file in path.rglob(f"*{LOG_SUFFIX}")
            if not any(part.startswith(".") for part in file.relative_to(path).parts)
            and file.is_file()  # a FIFO would block its reader forever, a device never end
        )
    return []


def read_logs(paths, parse_schedules: bool = True) -> LogReadout:
    """Every good record; every corrupt, truncated or unusable line reported with its file and line
    number. With `parse_schedules` (the default) each workload and trace is also parsed by TVM."""
    readout = LogReadout()
    pending = []
    for root in paths:
        for file in log_files(Path(root)):
            readout.files.append(file)
            with open(file, "rb") as handle:
                for number, raw in enumerate(_bounded_lines(handle), 1):
                    text = raw.decode("utf-8", errors="replace").strip() if len(raw) <= MAX_LINE_BYTES else "-"
                    if not text:
                        continue
                    why = line_problem(text, raw)
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
    if parse_schedules and readout.records:
        drop_unparseable_schedules(readout)
    return readout


def _bounded_lines(handle):
    """The file's lines; one longer than MAX_LINE_BYTES is read only that far and given as its first
    MAX_LINE_BYTES + 1 bytes (a bad line: line_problem says why), the rest of it skipped, so a file
    without newlines never has to fit in memory."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # the rest of the long line
                rest = handle.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Workload keys already in a log, per file as this process last saw it (inode, size). A file another
# process replaced (logs merge, check --fix: a new inode) or cut is read again; another tuner's
# appends only add workloads, so the cached set stays true (at worst a workload line is repeated).
_KNOWN_WORKLOADS: dict[Path, tuple[int, int, set]] = {}


def _workload_keys_in(path: Path) -> set:
    keys = set()
    if path.exists():
        with open(path, "rb") as handle:
            for raw in _bounded_lines(handle):
                if raw.startswith(b"{") and b'"kind":"workload"' in raw and len(raw) <= MAX_LINE_BYTES:
                    try:
                        keys.add(json.loads(raw)["workload_key"])
                    except (json.JSONDecodeError, RecursionError, KeyError, TypeError):
                        pass
    return keys


def _known_workloads(path: Path) -> set:
    try:
        stat = path.stat()
    except FileNotFoundError:
        _KNOWN_WORKLOADS.pop(path, None)
        return set()
    cached = _KNOWN_WORKLOADS.get(path)
    if cached is None or cached[0] != stat.st_ino or stat.st_size < cached[1]:
        cached = (stat.st_ino, stat.st_size, _workload_keys_in(path))
    _KNOWN_WORKLOADS[path] = cached
    return cached[2]


class LogWriteError(EdgeccError):
    """A tuning log could not take the whole append (disk full, quota, file size limit)."""


def append_records(path: Path, records: list[Record]) -> None:
    """Whole lines under an exclusive lock, O_APPEND and fsync: two tuners can share one log, and a
    kill -9 can at worst leave one truncated last line, which readers skip and report (and the next
    append seals). A short write is continued until every byte is written; when the file system
    refuses the rest (disk full, quota, file size limit), the file is cut back to where this append
    started, so no partial line stays, and LogWriteError says so. A record's workload line is
    written first, once per file."""
    if not records:
        return
    path = Path(path)
    with _locked(path):
        known = set(_known_workloads(path))
        lines = []
        for record in records:
            key = record.data["workload_key"]
            if key not in known and record.workload is not None:
                lines.append(workload_line(key, record.workload) + "\n")
                known.add(key)
            lines.append(record.line() + "\n")
        needs_newline = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        data = (b"\n" if needs_newline else b"") + "".join(lines).encode()  # seal a killed writer's torn line
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LogWriteError(f"cannot append to the tuning log {path}: {exc.strerror}") from None
        try:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                _cut_back(fd, start)
                raise LogWriteError(
                    f"cannot append {len(records)} record(s) to the tuning log {path}: "
                    f"{exc.strerror or exc} (nothing of this append was kept)"
                ) from None
        finally:
            os.close(fd)
        stat = path.stat()
        _KNOWN_WORKLOADS[path] = (stat.st_ino, stat.st_size, known)


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a signal, a nearly full disk): write the rest, or raise."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "the file system accepted no more bytes")
        view = view[written:]


def _cut_back(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        pass  # the reader still skips (and reports) a torn last line, and the next append seals it


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def valid_latency(record: Record) -> bool:
    latency = record.data.get("latency_s")
    return (
        isinstance(latency, (int, float)) and not isinstance(latency, bool) and math.isfinite(latency) and latency > 0
    )


def best_records(records: list[Record]) -> dict[tuple[str, str], Record]:
    """The fastest record per (workload, target); a record without a finite latency > 0 is never chosen."""
    best: dict[tuple[str, str], Record] = {}
    for record in records:
        if not valid_latency(record):
            continue
        current = best.get(record.key)
        if current is None or record.latency < current.latency:
            best[record.key] = record
    return best


def _merged_text(records: list[Record]) -> str:
    best = best_records(records)
    workloads = {r.data["workload_key"]: r.workload for r in best.values()}
    lines = [workload_line(key, workloads[key]) + "\n" for key in sorted(workloads)]
    lines += [best[k].line() + "\n" for k in sorted(best)]
    return "".join(lines)


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.rewrite-(?P<pid>\d+)-[^.]*\.tmp")
_LEGACY_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.jsonl")  # earlier versions' temporary name (mkstemp's)


def _replace_log(path: Path, text: str) -> None:
    """Replace a log atomically (under its lock). The temporary file is `.NAME.rewrite-PID-XXXX.tmp`:
    hidden and not *.jsonl, so what a kill -9 leaves is never read as a log, and the next rewrite of
    the same log removes it once its process is gone."""
    from edgecc.atomic import write_text_atomic

    remove_stale_temporaries(path)
    write_text_atomic(path, text, prefix=f".{path.name}.rewrite-{os.getpid()}-", suffix=".tmp")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of killed rewrites of the log `path` (their process is gone; those of versions
    that did not name the process, once an hour old)."""
    from edgecc.atomic import LEGACY_STALE_S, process_alive

    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return removed
    for candidate in candidates:
        match = _TEMPORARY.fullmatch(candidate.name) or _LEGACY_TEMPORARY.fullmatch(candidate.name)
        if not match or match["name"] != path.name or not candidate.is_file() or candidate.is_symlink():
            continue
        try:
            stale = (
                not process_alive(int(match["pid"]))
                if "pid" in match.groupdict()
                else time.time() - candidate.stat().st_mtime > LEGACY_STALE_S
            )
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def write_merged(path: Path, records: list[Record]) -> None:
    """Workloads then records, each sorted by key, one best record per (workload, target);
    replaced atomically."""
    path = Path(path)
    with _locked(path):
        _replace_log(path, _merged_text(records))


@dataclass
class MergeResult:
    readout: LogReadout
    best: dict


def merge_logs(sources, destination: Path) -> MergeResult:
    """Read SOURCES and write their best records to DESTINATION, all under DESTINATION's lock: a
    tuner appending to DESTINATION (which takes the same lock) waits, and its records are either
    read into the merge or appended after it; none is lost, also when DESTINATION is a source."""
    destination = Path(destination)
    with _locked(destination):
        readout = read_logs(sources)
        best = best_records(readout.records)
        if not best and destination.exists() and destination.stat().st_size > 0:
            raise EdgeccError(
                f"no good record in {', '.join(str(s) for s in sources)} "
                f"({len(readout.bad_lines)} bad line(s)); {destination} was left as it was"
            )
        _replace_log(destination, _merged_text(list(best.values())))
    return MergeResult(readout, best)


def drop_bad_lines(path: Path) -> int:
    """Rewrite one log without its unusable lines (torn, corrupt, or unreadable by TVM), good lines
    unchanged and in order; under the log's lock and replaced atomically, so a concurrent tuner loses
    nothing. Returns how many lines were dropped."""
    path = Path(path)
    with _locked(path):
        bad = {number for _, number, _ in read_logs([path]).bad_lines}
        kept = []
        with open(path, "rb") as handle:
            for number, raw in enumerate(_bounded_lines(handle), 1):
                text = raw.decode("utf-8", errors="replace").strip()
                if text and number not in bad:
                    kept.append(text + "\n")
        if bad:
            _replace_log(path, "".join(kept))
    return len(bad)
