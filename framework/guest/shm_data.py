"""The data of a `sharedmem` grant both ends agree on: where it is published, the page
patterns of a round and how a difference is described, a grant's parameters as a
devtree gives them, and the `shm.verify` record (`framework.guest.sharedmem`)."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.hw970.memory import PAGE_SIZE
from framework.trace.ids import K

if TYPE_CHECKING:
    from .kernel import GuestKernel

__all__ = [
    "ANSWER",
    "CONTROL_DIR",
    "DATA",
    "STORE_DIR",
    "GrantParams",
    "describe_mismatch",
    "emit_verify",
    "page_pattern",
]

#: Where a granter publishes its grants, relative to its xenstore home.
STORE_DIR: Final = "data/sharedmem"
#: Where dom0's toolstack asks a granter to act on a grant (`revoke`).
CONTROL_DIR: Final = "control/sharedmem"
#: Magics of the granter's data and of the peer's answer.
DATA: Final = b"XSHM"
ANSWER: Final = b"XSHA"
#: A 16-byte record repeated over the page: magic, round, page index, ~round.
_RECORD: Final = struct.Struct(">4sIII")
_RECORDS: Final = PAGE_SIZE // _RECORD.size


def page_pattern(magic: bytes, round_: int, page: int) -> bytes:
    """What page `page` holds in round `round_` (the granter's `DATA` or the peer's `ANSWER`)."""
    r = round_ & 0xFFFFFFFF
    return _RECORD.pack(magic, r, page, r ^ 0xFFFFFFFF) * _RECORDS


def describe_mismatch(pages: list[bytes], magic: bytes, round_: int) -> str | None:
    """None when every page holds its pattern, else where the first difference is."""
    bad = [i for i, data in enumerate(pages) if data != page_pattern(magic, round_, i)]
    if not bad:
        return None
    i = bad[0]
    data, want = pages[i], page_pattern(magic, round_, i)
    off = next(j for j in range(min(len(data), len(want))) if data[j] != want[j])
    found_magic, found_round, found_page, _ = _RECORD.unpack_from(data, off - off % 16)
    return (
        f"page {i} byte {off}: expected {magic.decode()} round {round_ & 0xFFFFFFFF}, found "
        f"{found_magic!r} round {found_round} page {found_page}; {len(bad)} of {len(pages)} "
        "pages differ"
    )


@dataclass(frozen=True)
class GrantParams:
    """One grant as a kernel's devtree describes it (`sharedmem.<i>.*`, granter side;
    `sharedmem-peer.<i>.*`, peer side)."""

    name: str
    other: int  # the peer's domid (granter side) or the granter's (peer side)
    pages: int = 1
    readonly: bool = False
    every: int = 0  # ns between rounds; 0 = no workload
    rounds: int = 0
    vcpu: int = 0

    @classmethod
    def from_props(cls, props: Mapping[str, object], other_key: str) -> GrantParams:
        def num(key: str, default: int) -> int:
            value = props.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"sharedmem {key} = {value!r} is not an integer")
            return value

        return cls(
            name=str(props["name"]),
            other=num(other_key, -1),
            pages=num("pages", 1),
            readonly=bool(num("readonly", 0)),
            every=num("every", 0),
            rounds=num("rounds", 0),
            vcpu=num("vcpu", 0),
        )


def emit_verify(
    k: GuestKernel, core: Core, other: int, round_: int, n: int, name: str, problem: str | None
) -> None:
    text = name if problem is None else f"{name}: {problem}"
    k.emit(core, K.SHM_VERIFY, other, round_, n, 0 if problem is None else 1, text=text)
