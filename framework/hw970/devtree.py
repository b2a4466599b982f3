"""The machine's own flattened device tree: what firmware hands Xen at boot.

Xen on the 970 learns the box (CPUs, memory, MPIC, host bridge) from the firmware's
device tree, never from probing, so the simulated board describes itself the same way.
This module also holds the small DTB toolkit that the domain devtree builder
(`framework.xen.public.devtree`) reuses: raw big-endian property encoding, and a reader that
works around the `fdt` package's shared reservation list (see `read_dtb`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import fdt

from framework.hw970.memory import IO_HOLE_END, IO_HOLE_START, PAGE_SIZE, memory_ranges

# --- DTB toolkit -------------------------------------------------------------------------

FDT_MAGIC: Final = 0xD00DFEED
#: Version written by both builders; v17 adds size_dt_struct to the 40-byte header.
FDT_VERSION: Final = 17
_HEADER: Final = struct.Struct(
    ">7I"
)  # magic, totalsize, off_struct, off_strings, off_rsvmap, ver, comp
_HEADER_V17_BYTES: Final = 40
_OFF_MEM_RSVMAP: Final = 16
_RSV_ENTRY: Final = struct.Struct(">QQ")

#: One devtree reservation-map entry: (base, size) in bytes.
Reservation = tuple[int, int]


def encode_cells(*values: int) -> bytes:
    """Encode 32-bit cells, the unit of most devtree properties."""
    for value in values:
        if not 0 <= value < 1 << 32:
            raise ValueError(f"devtree cell value {value:#x} does not fit in 32 bits")
    return struct.pack(f">{len(values)}I", *values)


def encode_u64s(*values: int) -> bytes:
    """Encode 64-bit quantities (two cells each), as Xen writes reg/shared-info pairs."""
    for value in values:
        if not 0 <= value < 1 << 64:
            raise ValueError(f"devtree value {value:#x} does not fit in 64 bits")
    return struct.pack(f">{len(values)}Q", *values)


def encode_string(text: str) -> bytes:
    """Encode a NUL-terminated ASCII string property (empty text gives a lone NUL)."""
    if "\0" in text or not text.isascii():
        raise ValueError(f"devtree string {text!r} must be ASCII without NUL characters")
    return text.encode("ascii") + b"\0"


def decode_cells(raw: bytes, what: str) -> list[int]:
    """Decode a property made of 32-bit cells; `what` names it in the error."""
    if len(raw) % 4:
        raise ValueError(f"{what}: {len(raw)} bytes is not a whole number of 32-bit cells")
    return list(struct.unpack(f">{len(raw) // 4}I", raw))


def decode_cell(raw: bytes, what: str) -> int:
    """Decode a property holding exactly one 32-bit cell."""
    cells = decode_cells(raw, what)
    if len(cells) != 1:
        raise ValueError(f"{what}: expected one 32-bit cell, found {len(cells)}")
    return cells[0]


def decode_u64s(raw: bytes, what: str) -> list[int]:
    """Decode a property made of 64-bit quantities; `what` names it in the error."""
    if len(raw) % 8:
        raise ValueError(f"{what}: {len(raw)} bytes is not a whole number of 64-bit values")
    return list(struct.unpack(f">{len(raw) // 8}Q", raw))


def decode_strings(raw: bytes, what: str) -> list[str]:
    """Decode a NUL-separated string list (e.g. `compatible`)."""
    if not raw.endswith(b"\0"):
        raise ValueError(f"{what}: string property is not NUL-terminated")
    try:
        return raw[:-1].decode("ascii").split("\0")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: string property is not ASCII") from exc


def decode_string(raw: bytes, what: str) -> str:
    """Decode a property holding exactly one string."""
    strings = decode_strings(raw, what)
    if len(strings) != 1:
        raise ValueError(f"{what}: expected one string, found {len(strings)}")
    return strings[0]


def dtb_node(
    name: str, props: Iterable[tuple[str, bytes]], children: Iterable[fdt.Node] = ()
) -> fdt.Node:
    """Build a node from raw property values, so the blob holds exactly those bytes."""
    node = fdt.Node(name)
    for prop_name, raw in props:
        # PropBytes keeps our encoding verbatim; the library's typed classes would
        # re-guess strings vs cells and reject empty strings.
        node.append(fdt.PropBytes(prop_name, data=raw) if raw else fdt.Property(prop_name))
    for child in children:
        node.append(child)
    return node


def write_dtb(root: fdt.Node, reservations: Iterable[Reservation], boot_cpuid: int = 0) -> bytes:
    """Serialise a tree (root named "/") and its reservation map as a v17 DTB."""
    entries = [{"address": base, "size": size} for base, size in reservations]
    # Pass a fresh list: fdt.FDT's default `entries` is one list shared by every instance.
    tree = fdt.FDT(entries=entries)
    tree.root = root
    return tree.to_dtb(version=FDT_VERSION, boot_cpuid_phys=boot_cpuid)


def read_dtb(blob: bytes) -> tuple[fdt.Node, tuple[Reservation, ...]]:
    """Parse a DTB into its root node and reservation map, raising ValueError if malformed.

    fdt.parse_dtb appends reservation entries to the list shared by every FDT() (a
    mutable default argument), so we read the map ourselves and hand the library a
    header whose map starts at the terminator.
    """
    blob = bytes(blob)
    if len(blob) < _HEADER_V17_BYTES:
        raise ValueError(f"DTB of {len(blob)} bytes is shorter than its 40-byte header")
    magic, total, _off_struct, _off_strings, off_rsv, version, _comp = _HEADER.unpack_from(blob)
    if magic != FDT_MAGIC:
        raise ValueError(f"DTB magic {magic:#010x} is not {FDT_MAGIC:#010x}")
    if version < 16:
        raise ValueError(f"DTB version {version} is older than 16")
    if total > len(blob):
        raise ValueError(f"DTB claims {total} bytes but only {len(blob)} are present")
    reservations: list[Reservation] = []
    offset = off_rsv
    while True:
        if offset + _RSV_ENTRY.size > total:
            raise ValueError("DTB reservation map runs past its end without a terminator")
        base, size = _RSV_ENTRY.unpack_from(blob, offset)
        if base == 0 and size == 0:
            break
        reservations.append((base, size))
        offset += _RSV_ENTRY.size
    patched = bytearray(blob[:total])
    struct.pack_into(">I", patched, _OFF_MEM_RSVMAP, offset)
    try:
        tree = fdt.parse_dtb(bytes(patched))
    except Exception as exc:  # the library raises bare Exception/AssertionError
        raise ValueError(f"malformed DTB structure: {exc}") from exc
    if tree.root is None:
        raise ValueError("DTB has no root node")
    return tree.root, tuple(reservations)


def property_bytes(node: fdt.Node, name: str) -> bytes | None:
    """Raw value of a property as it sits in the blob, or None when absent."""
    prop = node.get_property(name)
    if prop is None:
        return None
    if isinstance(prop, fdt.PropStrings):
        return b"".join(s.encode("ascii") + b"\0" for s in prop.data)
    if isinstance(prop, fdt.PropWords):
        return struct.pack(f">{len(prop.data)}I", *prop.data)
    if isinstance(prop, fdt.PropBytes):
        return bytes(prop.data)
    return b""


def require_property(node: fdt.Node, name: str, where: str) -> bytes:
    """Raw value of a property that must be present; `where` is the node path for errors."""
    raw = property_bytes(node, name)
    if raw is None:
        raise ValueError(f"devtree node {where} lacks property {name!r}")
    return raw


def require_node(parent: fdt.Node, name: str, where: str) -> fdt.Node:
    """A child node that must be present; `where` is its full path for errors."""
    node = parent.get_subnode(name)
    if node is None:
        raise ValueError(f"devtree lacks node {where}")
    return node


def nodes_of_type(parent: fdt.Node, device_type: str) -> list[fdt.Node]:
    """Children whose device_type is `device_type`, in blob order."""
    wanted = encode_string(device_type)
    return [n for n in parent.nodes if property_bytes(n, "device_type") == wanted]


def cpu_reg(node: fdt.Node) -> int:
    """The interrupt-server number (reg) of a CPU node under /cpus."""
    where = f"/cpus/{node.name}"
    return decode_cell(require_property(node, "reg", where), f"{where} reg")


def read_reg_ranges(node: fdt.Node, where: str) -> list[tuple[int, int]]:
    """(address, size) pairs of a reg with 2 address and 2 size cells."""
    values = decode_u64s(require_property(node, "reg", where), f"{where} reg")
    if len(values) % 2:
        raise ValueError(f"{where} reg holds an odd number of 64-bit values")
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


# --- The 970FX machine ---------------------------------------------------------------------

# The I/O hole (IO_HOLE_START, IO_HOLE_END) and the RAM ranges around it are the memory
# controller's, declared in `framework.hw970.memory`; the /memory nodes describe them.
#: 970FX physical addresses are 42 bits wide.
PHYS_ADDR_LIMIT: Final = 1 << 42

#: L1 geometry of the 970FX (970FX User's Manual, "Overview"): 64 KiB I-cache, 32 KiB
#: D-cache, 128-byte lines, which is also the dcbz/icbi block size guests must use.
DCACHE_BYTES: Final = 32 * 1024
ICACHE_BYTES: Final = 64 * 1024
CACHE_LINE_BYTES: Final = 128

#: The MPIC register window inside the U3/U4 north bridge (CPC925/CPC945), 256 KiB.
MPIC_BASE: Final = 0xF804_0000
MPIC_SIZE: Final = 0x4_0000
#: An OpenPIC's feature register encodes at most 2048 sources and 32 processors.
MPIC_MAX_SOURCES: Final = 2048
MPIC_MAX_CPUS: Final = 32

CPU_NODE_PREFIX: Final = "PowerPC,970FX"


@dataclass(frozen=True)
class MachineDevtreeSpec:
    """What the board's firmware knows about itself.

    The default model is the Momentum Maple(-D) evaluation board: its CPUs are 970FX (the
    JS21 blade carries 970MP), it is the board the Xen/PPC port was brought up on, and its
    name is what the 2007 toolstack still wrote into every domain's tree.
    """

    ncpus: int
    memory_bytes: int
    clock_hz: int
    timebase_hz: int
    model: str = "Momentum,Maple"
    mpic_sources: int = 128

    def __post_init__(self) -> None:
        if not 1 <= self.ncpus <= MPIC_MAX_CPUS:
            raise ValueError(
                f"MachineDevtreeSpec.ncpus = {self.ncpus}: an MPIC serves 1..{MPIC_MAX_CPUS} CPUs"
            )
        if self.memory_bytes <= 0 or self.memory_bytes % PAGE_SIZE:
            raise ValueError(
                f"MachineDevtreeSpec.memory_bytes = {self.memory_bytes:#x} "
                "is not a positive number of 4 KiB pages"
            )
        top = memory_ranges(self.memory_bytes)[-1]
        if top[0] + top[1] > PHYS_ADDR_LIMIT:
            raise ValueError(
                f"MachineDevtreeSpec.memory_bytes = {self.memory_bytes:#x} ends past the "
                "970FX's 42-bit physical address space once the I/O hole is skipped"
            )
        for name in ("clock_hz", "timebase_hz"):
            value = getattr(self, name)
            if not 0 < value < 1 << 32:
                raise ValueError(f"MachineDevtreeSpec.{name} = {value} must fit one 32-bit cell")
        if not 1 <= self.mpic_sources <= MPIC_MAX_SOURCES:
            raise ValueError(
                f"MachineDevtreeSpec.mpic_sources = {self.mpic_sources}: "
                f"an OpenPIC has 1..{MPIC_MAX_SOURCES} sources"
            )
        if not self.model or "\0" in self.model or not self.model.isascii():
            raise ValueError(f"MachineDevtreeSpec.model {self.model!r} must be non-empty ASCII")


@dataclass(frozen=True)
class MachineInfo:
    """What Xen's boot learns from the machine devtree."""

    ncpus: int
    memory_ranges: list[tuple[int, int]]
    clock_hz: int
    timebase_hz: int
    mpic_sources: int
    mpic_base: int
    model: str

    @property
    def memory_bytes(self) -> int:
        """Installed RAM, not counting the I/O hole."""
        return sum(size for _base, size in self.memory_ranges)


def cpu_properties(
    index: int, clock_hz: int, timebase_hz: int, extra: Iterable[tuple[str, bytes]] = ()
) -> list[tuple[str, bytes]]:
    """Properties of one 970 CPU node: the machine's and a domain's VCPUs share them."""
    return [
        ("device_type", encode_string("cpu")),
        ("reg", encode_cells(index)),
        ("clock-frequency", encode_cells(clock_hz)),
        ("timebase-frequency", encode_cells(timebase_hz)),
        *extra,
        ("64-bit", b""),
        ("d-cache-size", encode_cells(DCACHE_BYTES)),
        ("i-cache-size", encode_cells(ICACHE_BYTES)),
        ("d-cache-line-size", encode_cells(CACHE_LINE_BYTES)),
        ("i-cache-line-size", encode_cells(CACHE_LINE_BYTES)),
        ("d-cache-block-size", encode_cells(CACHE_LINE_BYTES)),
        ("i-cache-block-size", encode_cells(CACHE_LINE_BYTES)),
    ]


def _cpu_node(index: int, spec: MachineDevtreeSpec) -> fdt.Node:
    # Bare-metal firmware has no ibm,pft-size (that is an LPAR property).
    return dtb_node(
        f"{CPU_NODE_PREFIX}@{index:x}", cpu_properties(index, spec.clock_hz, spec.timebase_hz)
    )


def build_machine_devtree(spec: MachineDevtreeSpec) -> bytes:
    """The v17 DTB the firmware hands Xen for this machine."""
    cpus = dtb_node(
        "cpus",
        [("#address-cells", encode_cells(1)), ("#size-cells", encode_cells(0))],
        [_cpu_node(i, spec) for i in range(spec.ncpus)],
    )
    memories = [
        dtb_node(
            f"memory@{base:x}",
            [("device_type", encode_string("memory")), ("reg", encode_u64s(base, size))],
        )
        for base, size in memory_ranges(spec.memory_bytes)
    ]
    mpic = dtb_node(
        f"interrupt-controller@{MPIC_BASE:x}",
        [
            ("compatible", encode_string("open-pic")),
            ("device_type", encode_string("open-pic")),
            ("interrupt-controller", b""),
            ("#interrupt-cells", encode_cells(2)),
            ("#address-cells", encode_cells(0)),
            ("reg", encode_u64s(MPIC_BASE, MPIC_SIZE)),
            # Linux's MPIC binding: the highest source number, overriding the FRR's count.
            ("last-interrupt-source", encode_cells(spec.mpic_sources - 1)),
        ],
    )
    host_bridge = dtb_node(
        "ht@0",
        [
            ("device_type", encode_string("ht")),
            ("compatible", encode_string("u3-ht")),
            ("#address-cells", encode_cells(3)),
            ("#size-cells", encode_cells(2)),
        ],
    )
    root = dtb_node(
        "/",
        [
            ("#address-cells", encode_cells(2)),
            ("#size-cells", encode_cells(2)),
            ("model", encode_string(spec.model)),
            ("compatible", encode_string(spec.model)),
            ("device_type", encode_string("chrp")),
        ],
        [cpus, *memories, mpic, host_bridge],
    )
    return write_dtb(root, ())


def parse_machine_devtree(blob: bytes) -> MachineInfo:
    """Read what Xen needs from a machine DTB, raising ValueError on anything missing."""
    root, _reservations = read_dtb(blob)
    model = decode_string(require_property(root, "model", "/"), "/ model")

    cpus_node = require_node(root, "cpus", "/cpus")
    cpus = nodes_of_type(cpus_node, "cpu")
    if not cpus:
        raise ValueError("devtree /cpus has no node with device_type 'cpu'")
    by_reg = {cpu_reg(c): c for c in cpus}
    if sorted(by_reg) != list(range(len(cpus))):
        raise ValueError(f"devtree CPU reg values {sorted(by_reg)} are not 0..{len(cpus) - 1}")
    boot = by_reg[0]
    where = f"/cpus/{boot.name}"
    clock_hz = decode_cell(require_property(boot, "clock-frequency", where), where)
    timebase_hz = decode_cell(require_property(boot, "timebase-frequency", where), where)

    ranges: list[tuple[int, int]] = []
    for mem in nodes_of_type(root, "memory"):
        ranges.extend(read_reg_ranges(mem, f"/{mem.name}"))
    if not ranges:
        raise ValueError("devtree has no memory node")
    ranges.sort()
    for base, size in ranges:
        if base < IO_HOLE_END and base + size > IO_HOLE_START:
            raise ValueError(
                f"devtree memory range {base:#x}+{size:#x} overlaps the 2-4GiB I/O hole "
                "(host bridge windows, never RAM)"
            )

    mpics = nodes_of_type(root, "open-pic")
    if len(mpics) != 1:
        raise ValueError(f"devtree has {len(mpics)} open-pic nodes, expected one")
    mpic = mpics[0]
    where = f"/{mpic.name}"
    mpic_regs = read_reg_ranges(mpic, where)
    if not mpic_regs:
        raise ValueError(f"devtree {where} has an empty reg")
    last = decode_cell(require_property(mpic, "last-interrupt-source", where), where)

    return MachineInfo(
        ncpus=len(cpus),
        memory_ranges=ranges,
        clock_hz=clock_hz,
        timebase_hz=timebase_hz,
        mpic_sources=last + 1,
        mpic_base=mpic_regs[0][0],
        model=model,
    )
