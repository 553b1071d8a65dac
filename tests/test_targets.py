"""Every board file loads and validates; broken files and unknown names fail with one clear line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edgecc.errors import TargetError
from edgecc.targets import TARGETS_DIR, aliases, known_target_names, load_target, load_target_file

BOARD_FILES = sorted(p for p in TARGETS_DIR.glob("*.toml") if p.name != "aliases.toml")


@pytest.mark.parametrize("path", BOARD_FILES, ids=lambda p: p.stem)
def test_every_target_file_loads_and_builds_a_tvm_target(path):
    target = load_target_file(path)
    assert target.name == path.stem
    assert target.board.peak_gflops["fp32"] > 0
    if target.name == "host":  # no invented power figures: energy is metered or not reported
        assert not target.board.has_power_figures
    else:
        assert target.board.tdp_watts > target.board.idle_watts > 0
    tvm_target = target.tvm()
    assert tvm_target.kind.name == target.tvm_target["kind"]
    if target.tvm_host:
        assert tvm_target.host.attrs["mtriple"] == target.tvm_host["mtriple"]


def test_the_three_accelerator_boards_are_present():
    assert {"jetson-orin-nano", "apple-m2-metal", "snapdragon-8-gen-2-hexagon"} <= set(known_target_names())
    assert load_target("jetson-orin-nano").tvm_target["arch"] == "sm_87"
    assert load_target("apple-m2-metal").tvm_host["mtriple"] == "arm64-apple-macos"
    assert load_target("snapdragon-8-gen-2-hexagon").tvm_target["mtriple"] == "hexagon"


@pytest.mark.parametrize(
    "alias, board",
    [
        ("jetson-orin", "jetson-orin-nano"),
        ("raspberry-pi", "raspberry-pi-5"),
        ("snapdragon", "snapdragon-8-gen-2-cpu"),
        ("apple-m2", "apple-m2-metal"),
    ],
)
def test_family_aliases_resolve_to_their_default_board(alias, board):
    target = load_target(alias)
    assert target.name == board
    assert target.resolved_from == alias


def test_every_alias_points_at_an_existing_board():
    assert set(aliases().values()) <= set(known_target_names())


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(TargetError) as err:
        load_target("jetson-nano-2gb")
    message = str(err.value)
    assert "unknown target 'jetson-nano-2gb'" in message
    assert "jetson-orin-nano" in message and "apple-m2-metal" in message and "jetson-orin ->" in message
    assert "\n" not in message


def _broken_copy(tmp_path: Path, edit) -> Path:
    text = (TARGETS_DIR / "jetson-orin-nano.toml").read_text()
    path = tmp_path / "my-board.toml"
    path.write_text(edit(text))
    return path


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda t: t.replace('kind = "cuda"\narch', 'kind = "cuda\narch'), "is not valid TOML"),
        (lambda t: t.replace('os = "linux"\n', ""), "missing required field 'os'"),
        (lambda t: t.replace("cores = 6\n", 'cores = "six"\n'), "field 'board.cores' must be int"),
        (
            lambda t: t.replace("runs_on_host = false", "runs_on_host = 0"),
            "field 'capabilities.runs_on_host' must be bool",
        ),
        (lambda t: t.replace('kind = "cuda"\narch', 'kind = "vulkan"\narch'), "kind 'vulkan' is not one of"),
        (lambda t: t.replace("tdp_watts = 15.0", "tdp_watts = 15.0\nfan_rpm = 3"), "unknown field(s) board.fan_rpm"),
        (lambda t: t.replace("fp32 = 1280.0, ", ""), "board.peak_gflops.fp32 is required"),
    ],
    ids=["bad-toml", "missing-field", "wrong-type", "wrong-bool", "unknown-kind", "unknown-field", "no-fp32-peak"],
)
def test_a_broken_target_file_names_file_and_field(tmp_path, edit, expected):
    path = _broken_copy(tmp_path, edit)
    tomllib_ok = True
    try:
        tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError:
        tomllib_ok = False
    assert tomllib_ok == (expected != "is not valid TOML")
    with pytest.raises(TargetError) as err:
        load_target(str(path))
    message = str(err.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


def test_a_missing_target_file_is_a_target_error(tmp_path):
    with pytest.raises(TargetError, match="target file not found"):
        load_target(str(tmp_path / "nope.toml"))
