"""Layouts: the struct fast path packs and unpacks exactly as the field-by-field path."""

from __future__ import annotations

import importlib
import pkgutil
import random

import pytest

import framework.xen.public
from framework.xen.public.event_channel import EVTCHN_PORT
from framework.xen.public.grant_table import GNTTAB_COPY
from framework.xen.public.layout import Layout

#: Every structure the guest ABI declares (each module of framework.xen.public, io/ too).
LAYOUTS = [
    v
    for info in pkgutil.walk_packages(framework.xen.public.__path__, "framework.xen.public.")
    for v in vars(importlib.import_module(info.name)).values()
    if isinstance(v, Layout)
]


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
        # With unions, a later union member given overrides an earlier one, as in C.
        assert layout.pack(**values) == _slow_pack(layout, values)
        data = bytes(rng.randrange(256) for _ in range(layout.size))
        got = layout.unpack(data)
        assert got == _slow_unpack(layout, data)
        assert list(got) == list(layout.fields)  # declaration order is kept
        # A longer buffer (a ring slot, a page) decodes the same.
        assert layout.unpack(data + bytes(range(7))) == got


def test_most_layouts_take_the_struct_path() -> None:
    fast = [lay.name for lay in LAYOUTS if lay._codec is not None and lay._names is not None]
    assert {"blkif_request", "netif_tx_request", "gnttab_map_grant_ref"} <= set(fast)


def test_a_layout_with_unions_unpacks_through_layers_of_structs() -> None:
    copy = GNTTAB_COPY
    assert copy._codec is None and copy._layers is not None
    assert [names for _codec, names in copy._layers] == [
        ("source_ref", "source_domid", "source_offset", "dest_ref", "dest_domid")
        + ("dest_offset", "len", "flags", "status"),
        ("source_gmfn", "dest_gmfn"),
    ]
    # The source by gmfn and the destination by grant ref: neither clobbers the other.
    raw = copy.pack(source_gmfn=0x1122334455667788, dest_ref=7, len=100, status=0xFFFF)
    got = copy.unpack(raw)
    assert got["source_gmfn"] == 0x1122334455667788 and got["source_ref"] == 0x11223344
    assert (got["dest_ref"], got["dest_gmfn"], got["len"], got["status"]) == (
        7,
        7 << 32,
        100,
        0xFFFF,
    )
    # A short buffer still decodes field by field (missing bytes read as zero).
    short = copy.unpack(raw[:12])
    assert (short["source_ref"], short["dest_ref"], short["len"]) == (0x11223344, 0, 0)


def test_pack_refuses_unknown_fields() -> None:
    with pytest.raises(KeyError, match="nope"):
        EVTCHN_PORT.pack(nope=1)
