"""Boards as data: one TOML file per board in `edgecc/targets/boards/` (package data), validated on load.

Every difference between targets that the compiler acts on lives either in the target file
(capabilities, board facts, toolchain) or in the backend table keyed by `kind`
(`edgecc.backends.BACKENDS`); nothing else branches on the target.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from edgecc.errors import TargetError, ToolchainError
from edgecc.options import ARITHMETIC_PRECISIONS
from edgecc.user_files import MiB, checked_user_file

PACKAGE_DIR = Path(__file__).resolve().parent
TARGETS_DIR = Path(os.environ.get("EDGECC_TARGETS_DIR", PACKAGE_DIR / "boards"))
ALIASES_FILE = "aliases.toml"
KINDS = ("llvm", "cuda", "metal", "hexagon")

# field name -> (type, required). Nested tables are validated by their own schema below.
_TOP_SCHEMA = {
    "name": (str, True),
    "description": (str, True),
    "kind": (str, True),
    "family": (str, False),
    "arch": (str, True),
    "os": (str, True),
    "detect_host": (bool, False),
    "tvm": (dict, True),
    "toolchain": (dict, False),
    "board": (dict, True),
    "capabilities": (dict, True),
    "notes": (str, False),
}
_TOOLCHAIN_SCHEMA = {"compiler": (str, True), "package": (str, True), "options": (list, False)}
_BOARD_SCHEMA = {
    "cores": (int, True),
    "peak_gflops": (dict, True),
    "memory_bandwidth_gbs": ((int, float), True),
    "tdp_watts": ((int, float), False),  # without both power figures, energy is measured or not reported
    "idle_watts": ((int, float), False),
    "power_modes": (list, False),
    "default_power_mode": (str, False),
    "soc": (str, False),
    "cache_bytes": (int, False),  # on-chip cache a kernel's data can stay in between kernels
    "sources": (dict, False),  # where each figure comes from (datasheet, measured, derived)
}
_CAPABILITY_SCHEMA = {
    "fp16_math": (bool, True),
    "int8_math": (bool, True),
    "runs_on_host": (bool, True),
    "expected_failures": (list, False),
}


@dataclass(frozen=True)
class Toolchain:
    compiler: str
    package: str
    options: tuple[str, ...] = ()

    def require(self) -> str:
        """Return the compiler's path, or say which package provides it."""
        path = find_tool(self.compiler)
        if path is None:
            raise ToolchainError(
                f"cross-compiler '{self.compiler}' not found on PATH; install it with `apt-get install {self.package}`"
            )
        return path


def find_tool(name: str) -> str | None:
    """The tool on PATH, or Debian's newest versioned install of it."""
    return shutil.which(name) or _versioned_tool(name)


def _versioned_tool(name: str) -> str | None:
    """Debian installs LLVM tools also as `tool-NN` (e.g. `ld64.lld-14`); take the newest."""
    import glob

    candidates = sorted(
        glob.glob(f"/usr/bin/{name}-[0-9]*"),
        key=lambda p: int(p.rsplit("-", 1)[1]) if p.rsplit("-", 1)[1].isdigit() else -1,
    )
    return candidates[-1] if candidates else None


@dataclass(frozen=True)
class BoardFacts:
    cores: int
    peak_gflops: dict
    memory_bandwidth_gbs: float
    tdp_watts: float | None = None
    idle_watts: float | None = None
    power_modes: tuple = ()
    default_power_mode: str | None = None
    soc: str | None = None
    cache_bytes: int | None = None
    sources: dict = field(default_factory=dict)

    @property
    def has_power_figures(self) -> bool:
        return self.tdp_watts is not None and self.idle_watts is not None


@dataclass(frozen=True)
class Capabilities:
    fp16_math: bool
    int8_math: bool
    runs_on_host: bool
    expected_failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    kind: str
    arch: str
    os: str
    tvm_target: dict
    tvm_host: dict | None
    toolchain: Toolchain | None
    board: BoardFacts
    capabilities: Capabilities
    family: str | None = None
    notes: str = ""
    source: str = ""
    resolved_from: str | None = None  # the alias or family name the user typed, if any
    extra: dict = field(default_factory=dict)

    def tvm(self):
        """The TVM Target (device with host), in the JSON-dict form TVM 0.27 requires."""
        import tvm

        spec = dict(self.tvm_target)
        if self.tvm_host:
            spec["host"] = dict(self.tvm_host)
        return tvm.target.Target(spec)

    def peak_gflops(self, precision: str = "fp32") -> float | None:
        return self.board.peak_gflops.get(precision)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "resolved_from": self.resolved_from,
            "description": self.description,
            "kind": self.kind,
            "arch": self.arch,
            "os": self.os,
            "family": self.family,
            "tvm_target": self.tvm_target,
            "tvm_host": self.tvm_host,
            "toolchain": None
            if self.toolchain is None
            else {"compiler": self.toolchain.compiler, "package": self.toolchain.package},
            "board": {k: getattr(self.board, k) for k in BoardFacts.__dataclass_fields__},
            "capabilities": {k: getattr(self.capabilities, k) for k in Capabilities.__dataclass_fields__},
            "source": self.source,
        }


def _check_table(table: dict, schema: dict, where: str, source: str) -> None:
    for key, (typ, required) in schema.items():
        if key not in table:
            if required:
                raise TargetError(f"{source}: missing required field '{where}{key}'")
            continue
        value = table[key]
        if isinstance(value, bool) and typ in (int, (int, float)):
            raise TargetError(f"{source}: field '{where}{key}' must be a number, got {value!r}")
        if not isinstance(value, typ):
            expected = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise TargetError(f"{source}: field '{where}{key}' must be {expected}, got {type(value).__name__}")
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise TargetError(f"{source}: unknown field(s) {', '.join(where + u for u in unknown)}")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def parse_target(data: dict, source: str) -> Target:
    """Validate one target table and turn it into a Target; every problem names the file and field."""
    _check_table(data, _TOP_SCHEMA, "", source)
    if not _NAME.fullmatch(data["name"]) or data["name"] in (".", ".."):
        # the name becomes a folder (tuning_logs/<name>/): no separators, no "..", nothing hidden
        raise TargetError(
            f"{source}: field 'name' must be letters, digits, '.', '_' or '-' (it names the "
            f"target's tuning-log folder), not {data['name']!r}"
        )
    if data["kind"] not in KINDS:
        raise TargetError(f"{source}: kind '{data['kind']}' is not one of {', '.join(KINDS)}")
    tvm_table = data["tvm"]
    _check_table(tvm_table, {"target": (dict, True), "host": (dict, False)}, "tvm.", source)
    if "kind" not in tvm_table["target"]:
        raise TargetError(f"{source}: field 'tvm.target.kind' is required")
    toolchain = None
    if "toolchain" in data:
        _check_table(data["toolchain"], _TOOLCHAIN_SCHEMA, "toolchain.", source)
        toolchain = Toolchain(
            data["toolchain"]["compiler"], data["toolchain"]["package"], tuple(data["toolchain"].get("options", ()))
        )
    _check_table(data["board"], _BOARD_SCHEMA, "board.", source)
    for precision, value in data["board"]["peak_gflops"].items():
        if precision not in ARITHMETIC_PRECISIONS or not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TargetError(
                f"{source}: board.peak_gflops.{precision} must be a number for one of {ARITHMETIC_PRECISIONS}"
            )
    if "fp32" not in data["board"]["peak_gflops"]:
        raise TargetError(f"{source}: board.peak_gflops.fp32 is required")
    _check_table(data["capabilities"], _CAPABILITY_SCHEMA, "capabilities.", source)
    board = dict(data["board"])
    board["power_modes"] = tuple(board.get("power_modes", ()))
    caps = dict(data["capabilities"])
    caps["expected_failures"] = tuple(caps.get("expected_failures", ()))
    return Target(
        name=data["name"],
        description=data["description"],
        kind=data["kind"],
        arch=data["arch"],
        os=data["os"],
        family=data.get("family"),
        notes=data.get("notes", ""),
        tvm_target=dict(tvm_table["target"]),
        tvm_host=tvm_table.get("host"),
        toolchain=toolchain,
        board=BoardFacts(**board),
        capabilities=Capabilities(**caps),
        source=source,
        extra={"detect_host": data.get("detect_host", False)},
    )


MAX_TARGET_FILE_BYTES = MiB  # board files are a few KB


def load_target_file(path: Path) -> Target:
    path = checked_user_file(path, "target file", MAX_TARGET_FILE_BYTES, TargetError)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(f"target file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetError(f"target file {path} is not valid TOML: {exc}") from None
    target = parse_target(data, str(path))
    if target.extra.get("detect_host"):
        from edgecc.targets.host import detect_host

        target = detect_host(target)
    return target


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    path = PACKAGE_DIR / ALIASES_FILE
    if not path.exists():
        return {}
    return dict(tomllib.loads(path.read_text()).get("aliases", {}))


def known_target_names() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml") if p.name != ALIASES_FILE)


def aliases() -> dict[str, str]:
    return dict(_aliases())


def load_target(name_or_path: str | Target) -> Target:
    """A board name, a family alias (`jetson-orin`) or a path to the user's own target file."""
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        return load_target_file(Path(text))
    alias_map = _aliases()
    name = alias_map.get(text, text)
    path = TARGETS_DIR / f"{name}.toml"
    if not path.exists():
        known = ", ".join(known_target_names())
        families = ", ".join(f"{a} -> {b}" for a, b in sorted(alias_map.items()))
        raise TargetError(f"unknown target '{text}'. Known targets: {known}. Families: {families}")
    target = load_target_file(path)
    if name != text:
        target = _with(target, resolved_from=text)
    return target


def _with(target: Target, **changes) -> Target:
    from dataclasses import replace

    return replace(target, **changes)
