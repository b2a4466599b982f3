"""`Layout`: a big-endian structure in memory, declared once by field name, offset and width.

Every structure shared across the guest/Xen/device boundary is one `Layout` (all of them in
this package); `pack`/`unpack` run per ring entry and per hypercall argument, so each layout
precompiles `struct` codecs for itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from framework.hw970.memory import MachineMemory

_STRUCT_CODES: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True)
class Layout:
    """A big-endian structure in guest memory: field name -> (offset, width in bytes)."""

    name: str
    size: int
    fields: dict[str, tuple[int, int]]
    #: The whole structure as one `struct.Struct`, when every field is 1/2/4/8 bytes and
    #: none overlap (pack/unpack run per ring entry and per hypercall argument).
    _codec: struct.Struct | None = field(init=False, repr=False, compare=False)
    _masks: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] | None = field(init=False, repr=False, compare=False)
    #: A structure with unions (overlapping fields) as layers of non-overlapping fields,
    #: each one `struct.Struct`, when every field is 1/2/4/8 bytes (gnttab_copy's
    #: ref/gmfn unions, per grant copy).
    _layers: tuple[tuple[struct.Struct, tuple[str, ...]], ...] | None = field(
        init=False, repr=False, compare=False
    )
    #: Per field: its one-value struct, offset and mask (packing a structure with unions
    #: writes only the fields given).
    _field_codecs: dict[str, tuple[struct.Struct, int, int]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        order = sorted(self.fields.items(), key=lambda kv: kv[1][0])
        fmt, pos = ">", 0
        for _name, (off, width) in order:
            if width not in _STRUCT_CODES or off < pos:
                fmt = ""
                break
            fmt += f"{off - pos}x" * (off > pos) + _STRUCT_CODES[width]
            pos = off + width
        if fmt and pos <= self.size:
            fmt += f"{self.size - pos}x" * (self.size > pos)
            object.__setattr__(self, "_codec", struct.Struct(fmt))
        else:
            object.__setattr__(self, "_codec", None)
        masks = tuple((name, (1 << (8 * width)) - 1) for name, (_off, width) in order)
        object.__setattr__(self, "_masks", masks)
        # unpack keeps the declaration order of `fields`; the fast path needs it to be
        # the offset order too (true of every layout here).
        names = tuple(name for name, _ in order)
        same_order = names == tuple(self.fields)
        object.__setattr__(self, "_names", names if same_order else None)
        object.__setattr__(self, "_layers", _union_layers(order, self.size))
        object.__setattr__(
            self,
            "_field_codecs",
            {
                name: (struct.Struct(">" + _STRUCT_CODES[width]), off, (1 << (8 * width)) - 1)
                for name, (off, width) in order
                if width in _STRUCT_CODES
            },
        )

    def offset(self, field: str) -> int:
        return self.fields[field][0]

    def read(self, mem: MachineMemory, base: int, field: str) -> int:
        off, width = self.fields[field]
        return int.from_bytes(mem.read(base + off, width), "big")

    def write(self, mem: MachineMemory, base: int, field: str, value: int) -> None:
        off, width = self.fields[field]
        mem.write(base + off, (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big"))

    def pack(self, **values: int) -> bytes:
        """The structure's bytes with the given fields set (others zero)."""
        codec = self._codec
        if codec is not None:
            fields = self.fields
            for name in values:
                if name not in fields:
                    raise KeyError(name)
            return codec.pack(*[values.get(name, 0) & mask for name, mask in self._masks])
        buf = bytearray(self.size)
        codecs = self._field_codecs
        for name, value in values.items():
            one = codecs.get(name)
            if one is not None:
                one[0].pack_into(buf, one[1], value & one[2])
                continue
            off, width = self.fields[name]
            buf[off : off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
        return bytes(buf)

    def unpack(self, data: bytes) -> dict[str, int]:
        """Every field's value; `data` may run past the structure (a ring slot, a page)."""
        codec, names = self._codec, self._names
        if len(data) >= self.size:
            if codec is not None and names is not None:
                values = codec.unpack_from(data)
                return {name: value for name, value in zip(names, values)}
            layers = self._layers
            if layers is not None:
                found: dict[str, int] = {}
                for layer, layer_names in layers:
                    for name, value in zip(layer_names, layer.unpack_from(data)):
                        found[name] = value
                return {name: found[name] for name in self.fields}
        return {
            name: int.from_bytes(data[off : off + width], "big")
            for name, (off, width) in self.fields.items()
        }


def _union_layers(
    order: list[tuple[str, tuple[int, int]]], size: int
) -> tuple[tuple[struct.Struct, tuple[str, ...]], ...] | None:
    """Fields (in offset order) dealt into layers whose members do not overlap, each
    layer as one struct; None if a field is not 1/2/4/8 bytes or runs past `size`."""
    layers: list[list[tuple[str, int, int]]] = []
    for name, (off, width) in order:
        if width not in _STRUCT_CODES or off + width > size:
            return None
        for layer in layers:
            _last, last_off, last_width = layer[-1]
            if last_off + last_width <= off:
                layer.append((name, off, width))
                break
        else:
            layers.append([(name, off, width)])
    out = []
    for layer in layers:
        fmt, pos = ">", 0
        for _name, off, width in layer:
            fmt += f"{off - pos}x" * (off > pos) + _STRUCT_CODES[width]
            pos = off + width
        out.append((struct.Struct(fmt), tuple(name for name, _off, _width in layer)))
    return tuple(out)


def fits(layout: Layout, name: str, value: int, signed: bool = False) -> int:
    """Refuse a value its field cannot hold (Layout.pack would silently truncate it)."""
    bits = 8 * layout.fields[name][1]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ValueError(
            f"{layout.name}.{name} = {value} does not fit its {bits}-bit "
            f"{'signed' if signed else 'unsigned'} field"
        )
    return value


def signed16(value: int) -> int:
    """A 16-bit field (an int16_t status) read back unsigned from memory, as int16_t."""
    return value - 0x10000 if value & 0x8000 else value


def unpack_exact(layout: Layout, data: bytes) -> dict[str, int]:
    """`layout.unpack`, refusing data shorter than the structure (a truncated message)."""
    if len(data) < layout.size:
        raise ValueError(f"{layout.name} needs {layout.size} bytes, got {len(data)}")
    return layout.unpack(data)


__all__ = ["Layout", "fits", "signed16", "unpack_exact"]
