"""Inspect what a built library holds: ELF machine types, embedded CUDA binaries, Mach-O objects."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
EM_NAMES = {3: "x86", 40: "arm", 62: "x86_64", 164: "hexagon", 183: "aarch64", 190: "cuda"}
EM_CUDA = 190
CUDA_13_ELF_ABI = 8
FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
MACHO_MAGIC_64 = struct.pack("<I", 0xFEEDFACF)
MACHO_CPU_ARM64 = 0x0100000C


@dataclass(frozen=True)
class ElfHeader:
    offset: int
    machine: str
    elf_type: str
    flags: int
    abi_version: int = 0  # e_ident[EI_ABIVERSION]; CUDA cubins: 7 up to CUDA 12, 8 from CUDA 13


def read_elf_header(data: bytes, offset: int = 0) -> ElfHeader | None:
    """The header at `offset`, or None when no plausible 64/32-bit little-endian ELF header is there."""
    if data[offset : offset + 4] != ELF_MAGIC or len(data) < offset + 52:
        return None
    elf_class, endian = data[offset + 4], data[offset + 5]
    if elf_class not in (1, 2) or endian != 1:
        return None
    e_type, e_machine = struct.unpack_from("<HH", data, offset + 16)
    flags_at = offset + (48 if elf_class == 2 else 36)
    (flags,) = struct.unpack_from("<I", data, flags_at)
    types = {1: "relocatable", 2: "executable", 3: "shared object"}
    machine = EM_NAMES.get(e_machine, str(e_machine))
    return ElfHeader(offset, machine, types.get(e_type, str(e_type)), flags, data[offset + 8])


def elf_headers(path: Path) -> list[ElfHeader]:
    """Every ELF header in the file: the file's own first, then any embedded (e.g. CUDA cubins)."""
    data = Path(path).read_bytes()
    found, start = [], 0
    while (at := data.find(ELF_MAGIC, start)) >= 0:
        header = read_elf_header(data, at)
        if header is not None:
            found.append(header)
        start = at + 4
    return found


def cuda_sm_arch(header: ElfHeader) -> str:
    """The SM version a cubin was built for (e.g. 'sm_87'), from its e_flags.

    CUDA 13 cubins (ELF ABI version 8) keep the SM number in bits 8-15; CUDA 12 and older ones
    (ABI version 7) keep it in bits 0-7 (seen: nvcc 13 e_flags 0x6005704, NVRTC 12.2 0x570557).
    """
    if header.abi_version >= CUDA_13_ELF_ABI:
        return f"sm_{(header.flags >> 8) & 0xFF}"
    return f"sm_{header.flags & 0xFF}"


def cuda_toolkit_generation(header: ElfHeader) -> str:
    """'13+' or '12 or older': which CUDA ELF ABI a cubin uses (a CUDA 12 driver cannot load an ABI-8 cubin)."""
    return "13+" if header.abi_version >= CUDA_13_ELF_ABI else "12 or older"


def cuda_device_code(path: Path) -> dict:
    """Embedded CUDA device binaries in a library: their SM archs and whether a fatbin wraps them."""
    data = Path(path).read_bytes()
    cubins = [h for h in elf_headers(path) if h.machine == "cuda"]
    return {
        "cubin_archs": sorted({cuda_sm_arch(h) for h in cubins}),
        "cubin_cuda": sorted({cuda_toolkit_generation(h) for h in cubins}),
        "cubins": len(cubins),
        "fatbin": FATBIN_MAGIC in data,
    }


def macho_arch(path: Path) -> str | None:
    data = Path(path).read_bytes()[:8]
    if data[:4] != MACHO_MAGIC_64:
        return None
    (cpu,) = struct.unpack_from("<I", data, 4)
    return "arm64" if cpu == MACHO_CPU_ARM64 else hex(cpu)


def library_machine(path: Path) -> str | None:
    header = read_elf_header(Path(path).read_bytes()[:64])
    return None if header is None else header.machine
