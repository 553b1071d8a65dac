"""The Meter interface: read either cumulative energy counters or instantaneous power, per rail."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class PowerReading:
    """One reading at time `t` (seconds): cumulative joules per rail, or watts per rail."""

    t: float
    joules: dict = field(default_factory=dict)
    watts: dict = field(default_factory=dict)


@dataclass
class EnergySample:
    """What a meter saw between start() and stop()."""

    meter: str
    seconds: float
    joules: float
    avg_watts: float
    peak_watts: float
    samples: int
    sample_rate_hz: float
    rails: list
    rail_joules: dict

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Meter:
    """Subclasses implement `read()`; counters (`joules`) are preferred, power (`watts`) is integrated.

    `start()` begins sampling in a thread at `interval_s`; `stop()` returns the EnergySample.
    Counter meters still sample during the run, so peak power and wraparound are seen.
    """

    name = "meter"
    interval_s = 0.05

    def rails(self) -> list[str]:
        return list(self.read().joules or self.read().watts)

    def read(self) -> PowerReading:  # pragma: no cover - interface
        raise NotImplementedError

    def wrap_joules(self, rail: str) -> float | None:
        """Counter range in joules for `rail`, for wraparound; None when the counter does not wrap."""
        return None

    def start(self) -> None:
        self._readings = [self.read()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._readings.append(self.read())

    def stop(self) -> EnergySample:
        self._stop.set()
        self._thread.join()
        self._readings.append(self.read())
        return summarise(self.name, self._readings, self.wrap_joules)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.sample = self.stop()
        return False


def counter_delta(before: float, after: float, wrap: float | None) -> float:
    """Increase of a cumulative counter that restarts from 0 after `wrap`."""
    delta = after - before
    if delta < 0 and wrap:
        delta += wrap
    return delta


def summarise(name: str, readings: list[PowerReading], wrap_of=lambda rail: None) -> EnergySample:
    """Joules and watts from a series of readings: counters are differenced, power is trapezoid-integrated."""
    if len(readings) < 2:
        raise ValueError("need at least two readings")
    seconds = readings[-1].t - readings[0].t
    rail_joules: dict = {}
    interval_watts = []
    for prev, cur in zip(readings, readings[1:]):
        dt = cur.t - prev.t
        step = 0.0
        if cur.joules:
            for rail, value in cur.joules.items():
                d = counter_delta(prev.joules[rail], value, wrap_of(rail))
                rail_joules[rail] = rail_joules.get(rail, 0.0) + d
                step += d
        else:
            for rail, watts in cur.watts.items():
                d = 0.5 * (prev.watts.get(rail, watts) + watts) * dt
                rail_joules[rail] = rail_joules.get(rail, 0.0) + d
                step += d
        if dt > 0:
            interval_watts.append(step / dt)
    if not readings[0].joules:
        # power meters report peak as the largest instantaneous reading, not the interval average
        interval_watts = [sum(r.watts.values()) for r in readings]
    joules = sum(rail_joules.values())
    return EnergySample(
        meter=name,
        seconds=seconds,
        joules=joules,
        avg_watts=joules / seconds if seconds > 0 else 0.0,
        peak_watts=max(interval_watts) if interval_watts else 0.0,
        samples=len(readings),
        sample_rate_hz=(len(readings) - 1) / seconds if seconds > 0 else 0.0,
        rails=sorted(rail_joules),
        rail_joules=rail_joules,
    )


def now() -> float:
    return time.monotonic()
