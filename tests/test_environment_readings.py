"""Measurement environment read from a recorded Jetson sysfs/proc tree and from this machine."""

from pathlib import Path

from edgecc.measure.environment import environment, stability_warning

TREE = Path(__file__).parent / "fixtures" / "energy" / "jetson_env"


def test_recorded_jetson_tree():
    env = environment(TREE)
    assert env["governors"] == ["schedutil"]
    assert env["cpus"]["cpu0"]["cur_mhz"] == 1510.4
    assert env["thermal_c"] == {"cpu-thermal": 47.5, "tj-thermal": 85.25}
    assert env["nvpmodel"] == "pmode:0002 fmode:quiet"
    assert env["load_average"] == [3.52, 2.10, 1.05]
    assert env["processor"] == "ARMv8 Processor rev 1 (v8l)"
    text = " ".join(env["warnings"])
    assert "schedutil" in text and "tj-thermal" in text


def test_this_machine_reads_without_error():
    env = environment("/")
    assert env["cpu_count"] >= 1 and isinstance(env["warnings"], list)
    assert env["load_average"] is None or len(env["load_average"]) == 3


def test_stability_warning_from_cv():
    assert stability_warning({"cv": 0.02}) is None
    assert "unstable" in stability_warning({"cv": 0.3})
