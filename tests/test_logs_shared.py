"""Shared tuning logs: check, merge, and safe appends (concurrent writers, kill -9, short writes, full disks).

The records are real: a TVM workload and a schedule trace TVM parses back, as a tuner writes them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecc.cli import main
from edgecc.targets import load_target
from edgecc.tuning import records as records_module
from edgecc.tuning.records import LogWriteError, append_records, make_record, merge_logs, read_logs

HOST = load_target("host")
PI5 = load_target("raspberry-pi-5")


def record(workload: str, latency: float, target=HOST):
    """A real record: the kernel B = A * 2 with its input named after `workload` (so each name is its
    own workload), and a schedule that parallelises its outer loop."""
    import tvm
    from tvm import s_tir, te
    from tvm.s_tir import meta_schedule as ms

    a = te.placeholder((4, 4), name="A_" + workload)
    b = te.compute((4, 4), lambda i, j: a[i, j] * 2.0, name="B")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    sch = s_tir.Schedule(mod)
    sch.parallel(sch.get_loops(sch.get_sblock("B"))[0])
    tvm_target = target.tvm()
    tvm_record = ms.database.TuningRecord(
        sch.trace, ms.database.Workload(mod), [latency], tvm_target, ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    )
    return make_record(ms.database.Workload(mod).as_json(), tvm_record.as_json(), tvm_target, target.name, latency)


def name_of(rec) -> str:
    """The workload name `record()` was given (read back from the kernel TVM parses)."""
    from tvm.s_tir import meta_schedule as ms

    script = ms.database.Workload.from_json(rec.workload).mod.script()
    return re.search(r"\bA_(\w+)", script).group(1)


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
    assert f"{log}:6: unknown line kind" in result.output
    assert f"{log}:7: truncated" in result.output
    assert "2 good record(s), 3 bad line(s)" in result.output
    append_records(log, [record("d", 1e-5)])  # the next append seals the torn line; nothing is lost
    readout = read_logs([log])
    assert sorted(name_of(r) for r in readout.records) == ["a", "b", "d"]
    fixed = CliRunner().invoke(main, ["logs", "check", "--fix", str(tmp_path)])
    assert fixed.exit_code == 0 and "dropped 3 bad line(s)" in fixed.output
    clean = CliRunner().invoke(main, ["logs", "check", str(tmp_path)])
    assert clean.exit_code == 0 and "3 good record(s), 0 bad line(s)" in clean.output


def _edited(rec, **changes) -> str:
    data = {**rec.data, **changes}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def test_semantically_bad_records_are_found_skipped_and_never_best(tmp_path, lowered_matmul):
    """Valid JSON that is not a usable record: `logs check` names each (file:line), compile skips it."""
    good = record("g", 2e-5)
    log = write_log(tmp_path / "host" / "records.jsonl", [good])  # line 1 workload, line 2 record
    bad = [
        _edited(good, latency_s="fast"),
        _edited(good, latency_s=float("nan")),
        _edited(good, latency_s=-1e-3),
        _edited(good, latency_s=0),
        _edited(good, target="llvm -mcpu=znver4"),  # not the JSON form
        _edited(good, trace=[[[["NoSuchInstruction", [], [], []]], []], [1e-5], {"kind": "llvm"}, []]),
        _edited(good, trace="not a trace"),
        _edited(good, board=7),
    ]
    with open(log, "a") as handle:
        handle.write("\n".join(bad) + "\n")
        # a workload line whose key matches but whose module TVM cannot read, and a record using it
        garbage = ["123", "not base64 @@"]
        handle.write(
            json.dumps(
                {
                    "format": "edgecc-tuning/1",
                    "kind": "workload",
                    "workload": garbage,
                    "workload_key": records_module.workload_key(garbage),
                }
            )
            + "\n"
        )
        handle.write(_edited(good, workload_key=records_module.workload_key(garbage)) + "\n")
    result = CliRunner().invoke(main, ["logs", "check", str(log)])
    assert result.exit_code == 1, result.output
    for number, fragment in [
        (3, "latency_s must be a number"),
        (4, "latency_s must be a finite number"),
        (5, "latency_s must be a finite number"),
        (6, "latency_s must be a finite number"),
        (7, "target is not JSON"),
        (8, "its schedule trace cannot be read by TVM"),
        (9, "trace must be TVM's tuning record"),
        (10, "board must be a string"),
        (12, "its workload line cannot be read by TVM"),
    ]:
        assert f"{log}:{number}: {fragment}" in result.output, (number, result.output)
    assert "1 good record(s)" in result.output
    # merge keeps the real record, never the NaN / negative / zero ones
    merged = CliRunner().invoke(main, ["logs", "merge", str(log), "-o", str(tmp_path / "m.jsonl")])
    assert merged.exit_code == 0, merged.output
    kept = read_logs([tmp_path / "m.jsonl"]).records
    assert [r.latency for r in kept] == [2e-5]
    # compile's reader skips them with file:line instead of failing
    from edgecc.tuning.apply import apply_tuning_records

    _, summary = apply_tuning_records(lowered_matmul, HOST, [log.parent])
    assert summary.bad_lines == 9
    assert f"{log}:8: its schedule trace cannot be read by TVM" in "\n".join(summary.skipped)


def test_best_records_never_picks_an_invalid_latency():
    from edgecc.tuning.records import best_records

    real = record("n", 3e-5)
    nan, negative = record("n", 3e-5), record("n", 3e-5)
    nan.data["latency_s"], negative.data["latency_s"] = float("nan"), -1.0
    best = best_records([nan, negative, real])
    assert list(best.values()) == [real]


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
    best = {(name_of(r), r.data["board"]): r.latency for r in merged}
    assert best == {("a", "host"): 1e-5, ("b", "host"): 2e-5, ("c", "host"): 4e-5, ("a", "raspberry-pi-5"): 9e-6}
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
print("ready", flush=True)
for i in range({count}):
    append_records(__import__('pathlib').Path({path!r}), [record('{tag}' + str(i), (i + 1) * 1e-7)])
"""


def _writer(path: Path, tag: str, count: int, **popen) -> subprocess.Popen:
    code = WRITER.format(tests=str(Path(__file__).parent), count=count, path=str(path), tag=tag)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, **popen)


def test_two_writers_on_one_log_lose_nothing(tmp_path):
    log = tmp_path / "records.jsonl"
    writers = [_writer(log, "p", 60), _writer(log, "q", 60)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    readout = read_logs([log])
    assert readout.bad_lines == []
    assert len(readout.records) == 120


def test_merge_into_the_log_a_tuner_is_appending_to_loses_nothing(tmp_path):
    """`logs merge LOG -o LOG` over and over while another process appends to LOG: every record stays."""
    log = write_log(tmp_path / "records.jsonl", [record("early", 5e-5)])
    writer = _writer(log, "t", 60)
    assert writer.stdout.readline().strip() == "ready"
    merges = 0
    while writer.poll() is None:
        merge_logs([log], log)
        merges += 1
    assert writer.returncode == 0
    merge_logs([log], log)
    readout = read_logs([log])
    assert readout.bad_lines == []
    assert sorted(name_of(r) for r in readout.records) == sorted(["early"] + [f"t{i}" for i in range(60)])
    assert merges >= 3  # the merges really overlapped the appends


def test_kill_9_mid_write_loses_no_earlier_record(tmp_path):
    log = tmp_path / "records.jsonl"
    writer = _writer(log, "k", 100000)
    deadline = time.time() + 60
    while (not log.exists() or log.stat().st_size < 200000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    readout = read_logs([log])
    assert len(readout.records) > 5
    assert len(readout.bad_lines) <= 1
    numbers = sorted(round(r.latency / 1e-7) - 1 for r in readout.records)
    assert numbers == list(range(len(numbers)))  # every record up to the kill is there, in order


def test_short_writes_are_continued_until_the_line_is_whole(tmp_path, monkeypatch):
    """Unit test of the write loop: os.write taking a few bytes at a time still gives whole lines."""
    real_write = os.write
    calls = []

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    log = tmp_path / "records.jsonl"
    monkeypatch.setattr(records_module.os, "write", short_write)
    append_records(log, [record("s", 1e-5)])
    monkeypatch.undo()
    assert len(calls) > 100
    readout = read_logs([log])
    assert readout.bad_lines == [] and [name_of(r) for r in readout.records] == ["s"]


def test_a_write_refused_half_way_leaves_no_partial_line(tmp_path, monkeypatch):
    log = write_log(tmp_path / "records.jsonl", [record("before", 1e-5)])
    size = log.stat().st_size
    real_write = os.write
    state = {"written": 0}

    def full_after_some(fd, data):
        if state["written"] > 3000:
            raise OSError(28, "No space left on device")
        state["written"] += 1000
        return real_write(fd, bytes(data[:1000]))

    monkeypatch.setattr(records_module.os, "write", full_after_some)
    with pytest.raises(LogWriteError, match="No space left on device"):
        append_records(log, [record("after", 1e-5)])
    monkeypatch.undo()
    assert log.stat().st_size == size
    readout = read_logs([log])
    assert readout.bad_lines == [] and [name_of(r) for r in readout.records] == ["before"]


FSIZE_WRITER = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_logs_shared import record
from edgecc.tuning.records import append_records
log = Path({path!r})
rec = record("big", 1e-5)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then answers EFBIG after a short write
resource.setrlimit(resource.RLIMIT_FSIZE, (log.stat().st_size + 5000, resource.RLIM_INFINITY))
append_records(log, [rec])
"""


def test_file_size_limit_mid_append_leaves_no_partial_line(tmp_path):
    """A real short write: RLIMIT_FSIZE lets the kernel take 5000 bytes of the ~18 KB append, then EFBIG."""
    log = write_log(tmp_path / "records.jsonl", [record("before", 1e-5)])
    size = log.stat().st_size
    code = FSIZE_WRITER.format(tests=str(Path(__file__).parent), path=str(log))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "LogWriteError" in done.stderr and "nothing of this append was kept" in done.stderr
    assert log.stat().st_size == size
    readout = read_logs([log])
    assert readout.bad_lines == [] and [name_of(r) for r in readout.records] == ["before"]


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 64 KiB tmpfs (needs mount rights: root in a container that allows it)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()[:100]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_mid_append_fails_loudly_and_keeps_earlier_records(tiny_filesystem):
    log = tiny_filesystem / "records.jsonl"
    append_records(log, [record("r0", 1e-5)])
    appended = 1
    with pytest.raises(LogWriteError, match="No space left on device"):
        for i in range(1, 20):  # each new workload is ~18 KB: the disk fills within a few appends
            append_records(log, [record(f"r{i}", 1e-5)])
            appended += 1
    readout = read_logs([log])
    assert readout.bad_lines == []
    assert sorted(name_of(r) for r in readout.records) == sorted(f"r{i}" for i in range(appended))


KILLED_MERGE = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from edgecc.tuning.records import merge_logs

real_fsync = os.fsync


def fsync_then_die(fd):
    if os.path.basename(os.readlink(f"/proc/self/fd/{{fd}}")).startswith(".records.jsonl"):
        os.kill(os.getpid(), signal.SIGKILL)  # the merged text is written, not yet renamed into place
    real_fsync(fd)


os.fsync = fsync_then_die
merge_logs([Path({source!r})], Path({destination!r}))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to find the file being synced")
def test_kill_9_mid_merge_leaves_nothing_read_as_a_log_and_the_next_merge_cleans_up(tmp_path):
    source = write_log(tmp_path / "team" / "records.jsonl", [record("m1", 2e-5), record("m2", 3e-5)])
    shared = tmp_path / "shared"
    destination = write_log(shared / "records.jsonl", [record("s1", 4e-5)])
    code = KILLED_MERGE.format(tests=str(Path(__file__).parent), source=str(source), destination=str(destination))
    killed = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p for p in shared.iterdir() if p.name.startswith(".records.jsonl.") and "lock" not in p.name]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # what the kill left
    assert not leftovers[0].name.endswith(".jsonl")
    legacy = shared / ".records.jsonl.k2j3h4l5.jsonl"  # what earlier versions' temporary name left
    legacy.write_text(record("ghost", 1e-9).line()[:80])
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))

    readout = read_logs([shared])
    assert readout.files == [destination] and readout.bad_lines == []
    assert [name_of(r) for r in readout.records] == ["s1"]
    check = CliRunner().invoke(main, ["logs", "check", str(shared)])
    assert check.exit_code == 0 and "1 good record(s), 0 bad line(s) in 1 file(s)" in check.output

    merged = CliRunner().invoke(main, ["logs", "merge", str(source), str(shared), "-o", str(destination)])
    assert merged.exit_code == 0, merged.output
    assert sorted(p.name for p in shared.iterdir() if not p.name.endswith(".lock")) == ["records.jsonl"]
    assert sorted(name_of(r) for r in read_logs([shared]).records) == ["m1", "m2", "s1"]


def _hostile_lines(good) -> list[bytes]:
    """Lines a hand edit or an attacker could put in a shared log, each valid enough to reach a parser."""
    deep_trace = dict(good.data, schedule="default", trace=[[], json.loads("[" * 900 + "]" * 900), [], []])
    return [
        b"[" * 100_000 + b"]" * 100_000 + b"\n",  # past the interpreter's recursion limit
        json.dumps(deep_trace).encode() + b"\n",  # under it: would reach merge's json.dumps and TVM
        json.dumps(dict(good.data, target='{"kind": ' + "[" * 5000 + "]" * 5000 + "}")).encode() + b"\n",
        b'{"format": "' + b"x" * (17 << 20) + b'"}\n',  # longer than any line edgecc writes
    ]


def test_deeply_nested_and_huge_lines_are_bad_lines_with_their_numbers(tmp_path):
    good = record("good", 2e-5)
    log = write_log(tmp_path / "logs" / "records.jsonl", [good])  # lines 1 (workload) and 2
    with open(log, "ab") as handle:
        for line in _hostile_lines(good):
            handle.write(line)
        handle.write(b"[" * 50_000)  # a last line with no newline, never read whole
    readout = read_logs([log])
    assert [name_of(r) for r in readout.records] == ["good"]
    whys = {number: why for _, number, why in readout.bad_lines}
    assert sorted(whys) == [3, 4, 5, 6, 7]
    assert "nested more than 64 levels deep" in whys[3] and "nested more than 64 levels deep" in whys[4]
    assert "target is nested" in whys[5] and "longer than 16 MiB" in whys[6] and "truncated" in whys[7]

    runner = CliRunner()
    check = runner.invoke(main, ["logs", "check", str(log)])
    assert check.exit_code == 1 and f"{log}:3: nested more than 64" in check.output and "Traceback" not in check.output
    show = runner.invoke(main, ["logs", "show", str(log)])
    assert show.exit_code == 0 and "1 good records in 1 file(s), 5 bad line(s) skipped" in show.output
    merged = runner.invoke(main, ["logs", "merge", str(log), "-o", str(tmp_path / "merged.jsonl")])
    assert merged.exit_code == 0 and "skipped 5 bad line(s)" in merged.output, merged.output
    assert [name_of(r) for r in read_logs([tmp_path / "merged.jsonl"]).records] == ["good"]
    fixed = runner.invoke(main, ["logs", "check", "--fix", str(log)])
    assert fixed.exit_code == 0 and "dropped 5 bad line(s)" in fixed.output
    assert read_logs([log]).bad_lines == [] and log.stat().st_size < 1 << 20
    append_records(log, [record("after", 1e-5)])  # an append reads the log's workload keys: no crash either
    assert sorted(name_of(r) for r in read_logs([log]).records) == ["after", "good"]


def test_a_compile_reading_a_log_with_a_hostile_line_still_compiles(tmp_path, tiny_model):
    logs = tmp_path / "logs"
    log = write_log(logs / "records.jsonl", [record("good", 2e-5)])
    with open(log, "ab") as handle:
        handle.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    result = CliRunner().invoke(
        main, ["compile", str(tiny_model), "-o", str(tmp_path / "out"), "--tuning-logs", str(logs), "--no-measure"]
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
