"""Energy meters on recorded sysfs trees and tool outputs in the real formats; expected joules by hand."""

import json
import shutil
import time
from pathlib import Path

import pytest

from edgecc.errors import EdgeccError
from edgecc.measure.energy import detect_meter, energy_per_inference, estimate_energy
from edgecc.measure.energy.base import EnergySample, summarise
from edgecc.measure.energy.measure import result_from_samples
from edgecc.measure.energy.sysfs import AmdEnergyMeter, Ina3221Meter, RaplMeter
from edgecc.measure.energy.tools import NvmlMeter, sample_from_powermetrics, sample_from_tegrastats

FIXTURES = Path(__file__).parent / "fixtures" / "energy"


def _tree(tmp_path, name):
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return root


def _clock(*times):
    it = iter(times)
    return lambda: next(it)


def test_rapl_counts_package_and_dram_and_handles_wraparound(tmp_path):
    root = _tree(tmp_path, "rapl")
    meter = RaplMeter(root, clock=_clock(0.0, 1.0))
    assert sorted(meter.zones) == ["dram", "package-0"]  # the core subzone is inside the package
    first = meter.read()
    zone = root / "sys/class/powercap/intel-rapl:0"
    (zone / "energy_uj").write_text("1000000\n")  # wrapped past max_energy_range_uj
    (zone / "intel-rapl:0:1/energy_uj").write_text("3000000\n")
    sample = summarise(meter.name, [first, meter.read()], meter.wrap_joules)
    # package: 262143328850 - 262140000000 + 1000000 uJ = 4.32885 J; dram: 2 J
    assert sample.rail_joules["package-0"] == pytest.approx(4.32885)
    assert sample.joules == pytest.approx(6.32885)
    assert sample.avg_watts == pytest.approx(6.32885)


def test_amd_energy_counts_sockets_not_cores(tmp_path):
    root = _tree(tmp_path, "amd")
    meter = AmdEnergyMeter(root, clock=_clock(0.0, 2.0))
    assert list(meter.counters) == ["Esocket0"]
    first = meter.read()
    (root / "sys/class/hwmon/hwmon2/energy17_input").write_text("53500000\n")
    sample = summarise(meter.name, [first, meter.read()])
    assert sample.joules == pytest.approx(3.5)
    assert sample.avg_watts == pytest.approx(1.75)


def test_ina3221_hwmon_counts_board_input_rail_only(tmp_path):
    root = _tree(tmp_path, "ina3221_hwmon")
    meter = Ina3221Meter(root, clock=_clock(0.0, 1.0))
    assert meter.all_rails == ["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"] and meter.counted == ["VDD_IN"]
    first = meter.read()
    (root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3/curr1_input").write_text("2000\n")
    sample = summarise(meter.name, [first, meter.read()])
    # 5.048 V x 1 A = 5.048 W, then 10.096 W; trapezoid over 1 s
    assert sample.joules == pytest.approx((5.048 + 10.096) / 2)
    assert sample.peak_watts == pytest.approx(10.096)
    assert sample.rails == ["VDD_IN"]


def test_ina3221_iio_jetpack4_layout(tmp_path):
    root = _tree(tmp_path, "ina3221_iio")
    meter = Ina3221Meter(root, clock=_clock(0.0, 2.0))
    assert meter.counted == ["POM_5V_IN"]
    first = meter.read()
    (root / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input").write_text("4796\n")
    sample = summarise(meter.name, [first, meter.read()])
    assert sample.joules == pytest.approx((2.796 + 4.796) / 2 * 2)


def test_tegrastats_orin_and_nano_lines():
    orin = sample_from_tegrastats((FIXTURES / "tegrastats_orin.txt").read_text(), interval_s=0.1)
    # VDD_IN 4, 6, 8 W at 100 ms: (4+6)/2*0.1 + (6+8)/2*0.1
    assert orin.joules == pytest.approx(1.2)
    assert orin.avg_watts == pytest.approx(6.0) and orin.peak_watts == pytest.approx(8.0)
    assert orin.rails == ["VDD_IN"] and orin.sample_rate_hz == pytest.approx(10.0)
    nano = sample_from_tegrastats((FIXTURES / "tegrastats_nano.txt").read_text(), interval_s=1.0)
    assert nano.joules == pytest.approx((2.796 + 4.796) / 2)  # RAM 1795/3964MB is not a rail


def test_powermetrics_uses_combined_power_over_each_window():
    sample = sample_from_powermetrics((FIXTURES / "powermetrics_m2.txt").read_text())
    assert sample.joules == pytest.approx(4.2 * 0.10052 + 5.6 * 0.2)
    assert sample.seconds == pytest.approx(0.30052)
    assert sample.peak_watts == pytest.approx(5.6)
    assert sample.rails == ["Combined"]


class RecordedNvml:
    """Replays recorded NVML values (the pynvml call surface) one sample per read."""

    def __init__(self, path, energy_supported=True):
        self.data = json.loads(Path(path).read_text())
        self.index = 0
        self.energy_supported = energy_supported

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return self.data["device_count"]

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def _sample(self, key):
        return self.data["samples"][min(self.index, len(self.data["samples"]) - 1)][key]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.energy_supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self._sample("energy_mj")

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._sample("power_mw")


@pytest.mark.parametrize("counter,expected", [(True, 250.0), (False, (60 + 200) / 2 * 0.5 + (200 + 300) / 2 * 0.5)])
def test_nvml_counter_and_power_paths(counter, expected):
    nvml = RecordedNvml(FIXTURES / "nvml_a100.json", energy_supported=counter)
    times = [s["t"] for s in nvml.data["samples"]]
    meter = NvmlMeter(nvml, clock=_clock(*times))
    readings = []
    for i in range(len(times)):
        nvml.index = i
        readings.append(meter.read())
    sample = summarise(meter.name, readings)
    assert meter.counter is counter
    assert sample.joules == pytest.approx(expected)


def test_detect_meter_on_recorded_trees():
    assert isinstance(detect_meter(FIXTURES / "rapl"), RaplMeter)
    assert isinstance(detect_meter(FIXTURES / "amd"), AmdEnergyMeter)
    assert isinstance(detect_meter(FIXTURES / "ina3221_hwmon"), Ina3221Meter)
    assert detect_meter(FIXTURES / "powermetrics_m2.txt") is None


def test_baseline_is_subtracted():
    idle = EnergySample("m", 1.0, 2.0, 2.0, 2.0, 3, 2.0, ["r"], {"r": 2.0})
    busy = EnergySample("m", 2.0, 10.0, 5.0, 7.0, 5, 2.0, ["r"], {"r": 10.0})
    result = result_from_samples(idle, busy, n_runs=4)
    assert result["joules_per_inference"] == pytest.approx((10.0 - 2.0 * 2.0) / 4)
    assert result["joules_per_inference_total"] == pytest.approx(2.5)
    assert result["kind"] == "measured" and result["peak_watts"] == 7.0


def test_energy_per_inference_live_thread_on_a_counter_tree(tmp_path):
    root = _tree(tmp_path, "amd")
    counter = root / "sys/class/hwmon/hwmon2/energy17_input"
    meter = AmdEnergyMeter(root)
    meter.interval_s = 0.01

    def run():  # every inference adds 0.5 J to the socket counter
        tmp = counter.with_suffix(".tmp")  # rename, so the sampling thread never reads a half-written file
        tmp.write_text(str(int(counter.read_text()) + 500000))
        tmp.replace(counter)
        time.sleep(0.005)

    result = energy_per_inference(meter, run, n_runs=20, idle_seconds=0.05)
    assert result["idle_watts"] == 0.0
    assert result["joules_per_inference"] == pytest.approx(0.5)
    assert result["samples"] >= 3 and result["sample_rate_hz"] > 0


def test_estimate_is_labelled_and_uses_target_power():
    from edgecc.targets import load_target

    target = load_target("raspberry-pi-4")
    est = estimate_energy(target, latency_s=0.1, utilisation=0.5)
    idle, tdp = target.board.idle_watts, target.board.tdp_watts
    assert est["kind"] == "estimated"
    assert est["joules_per_inference"] == pytest.approx(0.5 * (tdp - idle) * 0.1)
    assert est["joules_per_inference_total"] == pytest.approx((idle + 0.5 * (tdp - idle)) * 0.1)
    with pytest.raises(EdgeccError):
        estimate_energy(target, latency_s=0)
