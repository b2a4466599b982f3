"""Assemble PPC64 big-endian code with keystone, and disassemble with capstone."""

from __future__ import annotations

from functools import lru_cache

import capstone
import keystone


@lru_cache(maxsize=1)
def _ks() -> keystone.Ks:
    return keystone.Ks(keystone.KS_ARCH_PPC, keystone.KS_MODE_PPC64 | keystone.KS_MODE_BIG_ENDIAN)


@lru_cache(maxsize=1)
def _cs() -> capstone.Cs:
    return capstone.Cs(capstone.CS_ARCH_PPC, capstone.CS_MODE_64 | capstone.CS_MODE_BIG_ENDIAN)


def assemble(source: str, base: int = 0) -> bytes:
    """Machine code for `source` as if loaded at `base` (branches are relative anyway)."""
    try:
        encoding, _ = _ks().asm(source, base)
    except keystone.KsError as err:
        raise ValueError(f"keystone could not assemble: {err}") from err
    return bytes(encoding or b"")


def disassemble(code: bytes, base: int) -> list[str]:
    """One 'addr: mnemonic operands' line per instruction, for fault reports and traces."""
    return [f"{i.address:#x}: {i.mnemonic} {i.op_str}".rstrip() for i in _cs().disasm(code, base)]
