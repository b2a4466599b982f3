"""Layouts: the struct fast path packs and unpacks exactly as the field-by-field path."""

from __future__ import annotations

import random

import pytest

from framework.xen import abi, ioabi
from framework.xen import grant_table as gt
from framework.xen.abi import Layout

LAYOUTS = [v for mod in (abi, ioabi, gt) for v in vars(mod).values() if isinstance(v, Layout)]


def _slow_pack(layout: Layout, values: dict[str, int]) -> bytes:
    buf = bytearray(layout.size)
    for name, value in values.items():
        off, width = layout.fields[name]
        buf[off : off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
    return bytes(buf)


def _slow_unpack(layout: Layout, data: bytes) -> dict[str, int]:
    return {
        name: int.from_bytes(data[off : off + width], "big")
        for name, (off, width) in layout.fields.items()
    }


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
def test_pack_and_unpack_match_the_field_by_field_definition(layout: Layout) -> None:
    rng = random.Random(layout.name)
    for _ in range(20):
        # Values wider than their field are truncated to it, as a C store would.
        values = {
            name: rng.randrange(1 << (8 * width + 4))
            for name, (_off, width) in layout.fields.items()
            if rng.random() < 0.7 and width <= 8
        }
        packed = layout.pack(**values)
        if layout._codec is not None:  # unions take the field-by-field path for both
            assert packed == _slow_pack(layout, values)
        data = bytes(rng.randrange(256) for _ in range(layout.size))
        got = layout.unpack(data)
        assert got == _slow_unpack(layout, data)
        assert list(got) == list(layout.fields)  # declaration order is kept


def test_most_layouts_take_the_struct_path() -> None:
    fast = [lay.name for lay in LAYOUTS if lay._codec is not None and lay._names is not None]
    assert {"blkif_request", "netif_tx_request", "gnttab_map_grant_ref"} <= set(fast)


def test_pack_refuses_unknown_fields() -> None:
    with pytest.raises(KeyError, match="nope"):
        abi.EVTCHN_PORT.pack(nope=1)
