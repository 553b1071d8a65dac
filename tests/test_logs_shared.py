"""Shared tuning logs: check, merge, and safe appends (concurrent writers, kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from edgecc.cli import main
from edgecc.targets import load_target
from edgecc.tuning.records import append_records, make_record, read_logs

HOST = load_target("host")
PI5 = load_target("raspberry-pi-5")


def record(workload: str, latency: float, target=HOST):
    return make_record(["shash-" + workload, "body-" + workload], [["trace", workload], [latency], None, []],
                       target.tvm(), target.name, latency)


def write_log(path: Path, records) -> Path:
    append_records(path, records)
    return path


def test_check_reports_corrupt_and_truncated_lines_and_keeps_the_good(tmp_path):
    log = write_log(tmp_path / "host" / "records.jsonl", [record("a", 3e-5), record("b", 2e-5)])
    with open(log, "a") as handle:
        handle.write("{not json at all\n")
        handle.write(json.dumps({"format": "edgecc-tuning/1"}) + "\n")
        handle.write(record("c", 1e-5).line()[:57])  # a writer killed mid-line
    result = CliRunner().invoke(main, ["logs", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{log}:5: not JSON" in result.output
    assert f"{log}:6: missing field(s)" in result.output
    assert f"{log}:7: truncated" in result.output
    assert "2 good record(s), 3 bad line(s)" in result.output
    append_records(log, [record("d", 1e-5)])  # the next append seals the torn line; nothing is lost
    readout = read_logs([log])
    assert sorted(r.workload[0] for r in readout.records) == ["shash-a", "shash-b", "shash-d"]
    fixed = CliRunner().invoke(main, ["logs", "check", "--fix", str(tmp_path)])
    assert fixed.exit_code == 0 and "dropped 3 bad line(s)" in fixed.output
    clean = CliRunner().invoke(main, ["logs", "check", str(tmp_path)])
    assert clean.exit_code == 0 and "3 good record(s), 0 bad line(s)" in clean.output


def test_merge_keeps_best_per_workload_and_target_and_is_deterministic(tmp_path):
    alice = write_log(tmp_path / "alice.jsonl", [record("a", 3e-5), record("b", 2e-5), record("a", 9e-6, PI5)])
    bob = write_log(tmp_path / "bob.jsonl", [record("a", 1e-5), record("b", 2e-5), record("c", 4e-5)])
    with open(bob, "a") as handle:
        handle.write("garbage\n")
    first = CliRunner().invoke(main, ["logs", "merge", str(alice), str(bob), "-o", str(tmp_path / "m1.jsonl")])
    assert first.exit_code == 0, first.output
    assert "wrote 4 records (2 target(s))" in first.output
    assert "skipped 1 bad line(s)" in first.output
    merged = read_logs([tmp_path / "m1.jsonl"]).records
    best = {(r.workload[0], r.data["board"]): r.latency for r in merged}
    assert best == {("shash-a", "host"): 1e-5, ("shash-b", "host"): 2e-5, ("shash-c", "host"): 4e-5,
                    ("shash-a", "raspberry-pi-5"): 9e-6}
    second = CliRunner().invoke(main, ["logs", "merge", str(bob), str(alice), "-o", str(tmp_path / "m2.jsonl")])
    assert second.exit_code == 0
    assert (tmp_path / "m1.jsonl").read_bytes() == (tmp_path / "m2.jsonl").read_bytes()
    show = CliRunner().invoke(main, ["logs", "show", str(tmp_path / "m1.jsonl")])
    assert "board host: 3 records" in show.output and "board raspberry-pi-5: 1 records" in show.output


WRITER = """
import sys
sys.path.insert(0, {tests!r})
from test_logs_shared import record
from edgecc.tuning.records import append_records
for i in range({count}):
    append_records(__import__('pathlib').Path({path!r}), [record('{tag}' + str(i), 1e-5)])
"""


def _writer(path: Path, tag: str, count: int) -> subprocess.Popen:
    code = WRITER.format(tests=str(Path(__file__).parent), count=count, path=str(path), tag=tag)
    return subprocess.Popen([sys.executable, "-c", code])


def test_two_writers_on_one_log_lose_nothing(tmp_path):
    log = tmp_path / "records.jsonl"
    writers = [_writer(log, "p", 150), _writer(log, "q", 150)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    readout = read_logs([log])
    assert readout.bad_lines == []
    assert len(readout.records) == 300


def test_kill_9_mid_write_loses_no_earlier_record(tmp_path):
    log = tmp_path / "records.jsonl"
    writer = _writer(log, "k", 100000)
    deadline = time.time() + 60
    while (not log.exists() or log.stat().st_size < 20000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    readout = read_logs([log])
    assert len(readout.records) > 10
    assert len(readout.bad_lines) <= 1
    numbers = sorted(int(r.workload[0].removeprefix("shash-k")) for r in readout.records)
    assert numbers == list(range(len(numbers)))  # every record up to the kill is there, in order
