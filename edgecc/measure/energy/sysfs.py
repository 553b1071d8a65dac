"""Meters that read Linux sysfs: RAPL powercap counters, AMD energy hwmon, INA3221 power monitors.

Every class takes `root` so tests can point it at a recorded sysfs tree.
"""

from __future__ import annotations

from pathlib import Path

from edgecc.measure.energy.base import Meter, PowerReading, now

# A Jetson rail that already is the whole board's input; when present only it is counted,
# because the other rails are parts of it and adding them would count energy twice.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "VDD_SYS_5V0")


def _read_number(path: Path) -> float:
    return float(path.read_text().strip())


def _readable(path: Path) -> bool:
    try:
        _read_number(path)
        return True
    except (OSError, ValueError):
        return False


class RaplMeter(Meter):
    """Linux powercap: /sys/class/powercap/intel-rapl:N[/intel-rapl:N:M]/energy_uj (Intel, and AMD where exposed).

    Top-level zones (packages) and DRAM subzones are counted; core/uncore subzones are parts of the
    package and are left out so energy is not counted twice.
    """

    name = "rapl"

    def __init__(self, root: str | Path = "/", clock=now):
        self.clock = clock
        base = Path(root) / "sys/class/powercap"
        self.zones: dict[str, tuple[Path, float | None]] = {}
        # subzones sit inside their package's folder (and are also linked at top level on real systems)
        zones = {z.name: z for z in [*base.glob("intel-rapl:*"), *base.glob("intel-rapl:*/intel-rapl:*")]}
        for zone in (zones[k] for k in sorted(zones)) if base.is_dir() else []:
            label = (zone / "name").read_text().strip() if (zone / "name").exists() else zone.name
            top_level = zone.name.count(":") == 1
            if not (top_level or label == "dram") or not _readable(zone / "energy_uj"):
                continue
            wrap = zone / "max_energy_range_uj"
            rail = label if label not in self.zones else f"{label}-{zone.name}"
            self.zones[rail] = (zone / "energy_uj", _read_number(wrap) / 1e6 if _readable(wrap) else None)

    def available(self) -> bool:
        return bool(self.zones)

    def read(self) -> PowerReading:
        return PowerReading(self.clock(), joules={r: _read_number(p) / 1e6 for r, (p, _) in self.zones.items()})

    def wrap_joules(self, rail: str) -> float | None:
        return self.zones[rail][1]


def _hwmons(root: Path, pattern: str = "sys/class/hwmon/hwmon*"):
    return sorted(Path(root).glob(pattern))


class AmdEnergyMeter(Meter):
    """The amd_energy hwmon driver: energyN_input in microjoules with energyN_label (Esocket0, Ecore000...).

    Socket counters are counted when present (cores are inside sockets)."""

    name = "amd_energy"

    def __init__(self, root: str | Path = "/", clock=now):
        self.clock = clock
        self.counters: dict[str, Path] = {}
        for hwmon in _hwmons(root):
            if not (hwmon / "name").exists() or (hwmon / "name").read_text().strip() != "amd_energy":
                continue
            found = {}
            for value in sorted(hwmon.glob("energy*_input")):
                label_file = value.with_name(value.name.replace("_input", "_label"))
                label = label_file.read_text().strip() if label_file.exists() else value.name
                if _readable(value):
                    found[label] = value
            sockets = {k: v for k, v in found.items() if k.lower().startswith("esocket")}
            self.counters.update(sockets or found)

    def available(self) -> bool:
        return bool(self.counters)

    def read(self) -> PowerReading:
        return PowerReading(self.clock(), joules={r: _read_number(p) / 1e6 for r, p in self.counters.items()})


class Ina3221Meter(Meter):
    """INA3221 power monitors, as on Jetson boards. Two sysfs layouts:

    - hwmon (JetPack 5+): .../ina3221/<bus>/hwmon/hwmonN/inK_label, inK_input (mV), currK_input (mA)
    - iio (JetPack 4): .../ina3221x/<bus>/iio:deviceN/rail_name_K, in_powerK_input (mW)
      (or in_voltageK_input mV x in_currentK_input mA)
    """

    name = "ina3221"
    interval_s = 0.02

    def __init__(self, root: str | Path = "/", clock=now):
        self.clock = clock
        self.channels: dict[str, tuple] = {}  # rail -> (kind, paths...)
        drivers = Path(root) / "sys/bus/i2c/drivers"
        for hwmon in sorted(drivers.glob("ina3221*/*/hwmon/hwmon*")):
            for label in sorted(hwmon.glob("in*_label")):
                k = label.name[2 : -len("_label")]
                volts, amps = hwmon / f"in{k}_input", hwmon / f"curr{k}_input"
                rail = label.read_text().strip()
                if rail and _readable(volts) and _readable(amps):
                    self.channels[rail] = ("vi", volts, amps)
        for iio in sorted(drivers.glob("ina3221*/*/iio:device*")):
            for name in sorted(iio.glob("rail_name_*")):
                k = name.name.rsplit("_", 1)[1]
                rail = name.read_text().strip()
                power = iio / f"in_power{k}_input"
                if _readable(power):
                    self.channels[rail] = ("p", power)
                elif _readable(iio / f"in_voltage{k}_input") and _readable(iio / f"in_current{k}_input"):
                    self.channels[rail] = ("vi", iio / f"in_voltage{k}_input", iio / f"in_current{k}_input")
        self.all_rails = sorted(self.channels)
        total = [r for r in TOTAL_RAILS if r in self.channels]
        self.counted = total[:1] or self.all_rails

    def available(self) -> bool:
        return bool(self.channels)

    def _watts(self, rail: str) -> float:
        kind, *paths = self.channels[rail]
        if kind == "p":
            return _read_number(paths[0]) / 1e3
        return _read_number(paths[0]) * _read_number(paths[1]) / 1e6

    def read(self) -> PowerReading:
        return PowerReading(self.clock(), watts={r: self._watts(r) for r in self.counted})
