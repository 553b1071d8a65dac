"""The versioned schema of report.json, as data, with a small validator (no jsonschema dependency).

Version 2 (docs/report-schema.md). Sections other than the required ones may be empty dicts when a
step was skipped. Every energy section carries `kind`: "measured", "estimated" or "not measured".
Version 1 files (before the profile counted footprints and timed kernels inside the model) are
still read and re-rendered: `edgecc report OUT` labels what their figures meant.

What changed from 1 to 2: profile `bytes` is each argument buffer's footprint (v1: whole argument
buffers), `flops` counts integer arithmetic of quantized kernels too, kernels are timed inside the
model on the local CPU, `above_roof` explains figures over 100 %; energy `kind` may be "not
measured"; the target's `board.tdp_watts`/`idle_watts` may be null (the host has no power figures).
"""

from __future__ import annotations

from edgecc.errors import EdgeccError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # `edgecc report` / `compare` read these; compiles write SCHEMA_VERSION
ENERGY_KINDS = ("measured", "estimated", "not measured")

NUMBER = (int, float)

# field -> (type, required); nested dicts describe sections
SCHEMA = {
    "schema_version": (int, True),
    "model": ({"name": (str, True), "source": (str, True)}, True),
    "target": ({"name": (str, True)}, True),
    "options": (dict, True),
    "versions": (dict, False),
    "compile": ({"total_seconds": (NUMBER, True), "steps": (list, True)}, True),
    "artifact": ({"library": (str, True), "files": (dict, True)}, True),
    "verification": ({"status": (str, True)}, True),
    "latency": (dict, False),  # {edgecc: stats, onnxruntime: stats, where, emulated, warnings}
    "energy": (dict, False),  # {kind: measured|estimated, joules_per_inference, avg_watts, ...}
    "profile": (dict, False),  # {kernels: [...], sum_ms, end_to_end_ms, peak_gflops, ...}
    "environment": (dict, False),  # {governors, cpus, thermal_c, nvpmodel, load_average, warnings}
    "tuning": (dict, False),
    "accuracy": (dict, False),
    "passes": (dict, False),  # {graph pass name: its statistics}
    "precision": (dict, False),  # {requested, effective, layers: {precision: count}, why, sparse_attention, label}
    "schedules": (dict, False),  # {kernels, by_source: {tuned|rule:<name>|pass:<name>|dlight: n}, unscheduled, ...}
    "buckets": (dict, False),  # dynamic shapes: {batch, sequence, buckets: [...], verification: [...]}
}

LATENCY_STATS = ("runs", "min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms", "cv")
ENERGY_FIELDS = ("kind", "meter", "joules_per_inference", "avg_watts", "peak_watts")
KERNEL_FIELDS = (
    "name",
    "calls",
    "ms_per_call",
    "total_ms",
    "flops",
    "bytes",
    "arithmetic_intensity",
    "achieved_gflops",
    "achieved_gbs",
)


def _check(value, spec, path: str, errors: list[str]) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append(f"{path} must be an object")
            return
        for key, (kind, required) in spec.items():
            if key not in value or value[key] is None:
                if required:
                    errors.append(f"{path}.{key} is missing".lstrip("."))
                continue
            _check(value[key], kind, f"{path}.{key}", errors)
    elif not isinstance(value, spec) or (spec is int and isinstance(value, bool)):
        errors.append(f"{path.lstrip('.')} must be {getattr(spec, '__name__', 'a number')}")


def report_errors(report: dict, versions=(SCHEMA_VERSION,)) -> list[str]:
    errors: list[str] = []
    _check(report, SCHEMA, "", errors)
    if errors:
        return errors
    if report["schema_version"] not in versions:
        known = " or ".join(str(v) for v in versions)
        errors.append(f"schema_version {report['schema_version']} is not {known}")
    for runtime in ("edgecc", "onnxruntime"):
        stats = (report.get("latency") or {}).get(runtime)
        if stats:
            errors += [f"latency.{runtime}.{k} is missing" for k in LATENCY_STATS if k not in stats]
    energy = report.get("energy") or {}
    if energy and energy.get("status") != "skipped":
        if energy.get("kind") not in ENERGY_KINDS:
            errors.append("energy.kind must be 'measured', 'estimated' or 'not measured'")
        elif energy["kind"] == "not measured":
            errors += [] if energy.get("why") else ["energy.why is missing"]
        else:
            errors += [f"energy.{k} is missing" for k in ENERGY_FIELDS if k not in energy]
    for i, kernel in enumerate((report.get("profile") or {}).get("kernels", [])):
        errors += [f"profile.kernels[{i}].{k} is missing" for k in KERNEL_FIELDS if k not in kernel]
    return errors


def validate_report(report: dict, source: str = "report", versions=(SCHEMA_VERSION,)) -> dict:
    """Return `report` unchanged, or raise one clear EdgeccError naming the first problems.
    `versions`: the schema versions accepted (compiles write only the current one)."""
    errors = report_errors(report, versions)
    if errors:
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        version = report.get("schema_version") if report.get("schema_version") in versions else SCHEMA_VERSION
        raise EdgeccError(f"{source} does not match report schema v{version}: {'; '.join(errors[:3])}{more}")
    return report
