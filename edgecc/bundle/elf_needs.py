"""What an ELF file needs from the board: its DT_NEEDED libraries and versioned symbols (GLIBC_2.34, ...).

Read from the file itself (the .dynamic and .gnu.version_r sections), so the README's minimum
glibc and libstdc++ versions are the ones the shipped binaries really ask for.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

SHT_DYNAMIC, SHT_GNU_VERNEED = 6, 0x6FFFFFFE
DT_NEEDED = 1
# versioned-symbol families the README reports, and the library that provides each
FAMILIES = {
    "GLIBC": "glibc (libc.so.6)",
    "GLIBCXX": "libstdc++.so.6",
    "CXXABI": "libstdc++.so.6 C++ ABI",
    "GCC": "libgcc_s.so.1",
}


@dataclass
class ElfNeeds:
    path: Path
    needed: list[str] = field(default_factory=list)  # DT_NEEDED sonames
    versions: dict[str, list[str]] = field(default_factory=dict)  # soname -> version names asked of it


def read_elf_needs(path: Path) -> ElfNeeds:
    data = Path(path).read_bytes()
    needs = ElfNeeds(Path(path))
    if data[:4] != b"\x7fELF" or data[5] != 1:
        return needs  # not a little-endian ELF: nothing to report
    wide = data[4] == 2
    if wide:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    else:
        (shoff,) = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
    sections = [_section(data, shoff + i * shentsize, wide) for i in range(shnum)]
    for sh_type, offset, size, link, entsize in sections:
        if sh_type == SHT_DYNAMIC:
            strtab = sections[link][1]
            step = entsize or (16 if wide else 8)
            for at in range(offset, offset + size, step):
                tag, value = struct.unpack_from("<qQ" if wide else "<iI", data, at)
                if tag == DT_NEEDED:
                    needs.needed.append(_string(data, strtab + value))
        elif sh_type == SHT_GNU_VERNEED:
            needs.versions.update(_verneed(data, offset, sections[link][1]))
    return needs


def _section(data: bytes, at: int, wide: bool) -> tuple[int, int, int, int, int]:
    if wide:
        _, sh_type, _, _, offset, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", data, at)
    else:
        _, sh_type, _, _, offset, size, link, _, _, entsize = struct.unpack_from("<IIIIIIIIII", data, at)
    return sh_type, offset, size, link, entsize


def _verneed(data: bytes, at: int, strtab: int) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    while True:
        _, count, file_name, aux, following = struct.unpack_from("<HHIII", data, at)
        names, entry = [], at + aux
        for _ in range(count):
            _, _, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
            names.append(_string(data, strtab + name))
            entry += next_aux
        found[_string(data, strtab + file_name)] = sorted(names, key=_version_key)
        if not following:
            return found
        at += following


def _string(data: bytes, at: int) -> str:
    return data[at : data.index(b"\0", at)].decode("utf-8", "replace")


def _version_key(name: str) -> tuple:
    family, _, number = name.partition("_")
    return family, tuple(int(p) for p in re.findall(r"\d+", number))


def minimum_versions(files: list[ElfNeeds]) -> dict[str, str]:
    """Per family (GLIBC, GLIBCXX, CXXABI, GCC), the newest version any of the files asks for."""
    newest: dict[str, str] = {}
    for needs in files:
        for names in needs.versions.values():
            for name in names:
                family = name.partition("_")[0]
                if family in FAMILIES and re.search(r"\d", name):
                    if family not in newest or _version_key(name) > _version_key(newest[family]):
                        newest[family] = name
    return dict(sorted(newest.items()))


def system_libraries(files: list[ElfNeeds], shipped: set[str]) -> list[str]:
    """Sonames the board must provide: everything needed that the bundle does not ship itself."""
    return sorted({name for needs in files for name in needs.needed} - shipped)
