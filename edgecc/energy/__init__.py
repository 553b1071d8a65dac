"""Energy per inference: measured by a meter when the machine has one, else estimated from the target file.

Every result carries `kind: "measured"` or `kind: "estimated"` so the two are never confused.
"""

from .base import EnergySample, Meter, PowerReading
from .detect import detect_meter
from .estimate import estimate_energy
from .measure import energy_per_inference

__all__ = ["EnergySample", "Meter", "PowerReading", "detect_meter", "estimate_energy", "energy_per_inference"]
