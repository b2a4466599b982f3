"""The domain devtree: the flattened device tree a guest finds at r3 when it boots.

On PowerPC, Xen has no start_info page: the toolstack (domU) or Xen (dom0) writes a
devtree into guest memory describing the domain, following the 2007 layout of
tools/libxc/powerpc64/mk_flatdevtree.c and xen/arch/powerpc/ofd_fixup.c, with one
`PowerPC,970@N` node per VCPU (the 3.0.4 layout) and xen970's own `/xen/workload` node.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final, NoReturn

import fdt

from framework.hw970.devtree import (
    IO_HOLE_START,
    Reservation,
    cpu_properties,
    cpu_reg,
    decode_cell,
    decode_cells,
    decode_string,
    decode_strings,
    decode_u64s,
    dtb_node,
    encode_cells,
    encode_string,
    encode_u64s,
    nodes_of_type,
    property_bytes,
    read_dtb,
    read_reg_ranges,
    require_node,
    require_property,
    write_dtb,
)
from framework.hw970.memory import PAGE_SIZE
from framework.hw970.mmu import RMA_SIZES
from framework.xen.public.arch_powerpc import (
    DOM0_FOREIGN_MAP,
    GUEST_MEMORY_LIMIT,
    htab_bytes_for,
    rma_layout,
)
from framework.xen.public.event_channel import NR_EVENT_CHANNELS
from framework.xen.public.xen import DOMID_FIRST_RESERVED, MAX_VIRT_CPUS

#: Largest domain devtree, header to strings: the toolstack builds the tree in a fixed
#: 16 KiB buffer (BPH_SIZE in mk_flatdevtree.h) and copies that much into the guest.
DEVTREE_MAX_BYTES: Final = 16384

XEN_COMPATIBLE: Final = "Xen-3.0-unstable"
#: Root identity written by the 2007 toolstack for every domain: guest Linux picks its
#: Maple platform code from it, and the device_type keeps it from expecting CHRP firmware.
DOMAIN_MODEL: Final = "Momentum,Maple-D"
DOMAIN_COMPATIBLE: Final = "Momentum,Maple"
DOMAIN_DEVICE_TYPE: Final = "chrp-but-not-really"
#: phandle of /xen, the guest's event-channel "interrupt controller" (0 is not a valid
#: phandle, which the 2007 code handed to cpu0).
XEN_PHANDLE: Final = 1
CPU_NODE_PREFIX: Final = "PowerPC,970"
WORKLOAD_COMPATIBLE: Final = "xen970,workload"
#: Records each workload property's Python type, so parsing gives back exactly what was built.
WORKLOAD_TYPES_PROP: Final = "xen970,types"
#: On a memory node, the part of `reg` this kernel may use as its RAM. Linux's
#: early_init_dt_scan_memory reads it in place of `reg` when present (kdump's property);
#: dom0's tree uses it so /memory can describe the machine while dom0 keeps its own RAM.
USABLE_MEMORY_PROP: Final = "linux,usable-memory"
#: /xen property of dom0's tree: how many VCPUs dom0 has (its /cpus lists the machine's
#: physical CPUs instead); xen970's own, as `/xen/workload` is.
DOM0_VCPUS_PROP: Final = "xen970,vcpus"

#: SDR1.HTABSIZE allows hashed page tables of 2^18 .. 2^46 bytes.
HTAB_LOG2_MIN: Final = 18
HTAB_LOG2_MAX: Final = 46

WorkloadValue = int | str | list[int]
_WORKLOAD_RESERVED_NAMES: Final = frozenset(
    {"compatible", "name", "phandle", "linux,phandle", WORKLOAD_TYPES_PROP}
)
_PROP_NAME_CHARS: Final = frozenset(string.ascii_letters + string.digits + ",._+?#-")


@dataclass(frozen=True, kw_only=True)
class DomainDevtreeSpec:
    """Everything a domain's devtree says, in guest-physical bytes.

    `workload` fills `/xen/workload` (compatible "xen970,workload"), xen970's own
    extension node through which the toolstack passes workload parameters (pingpong port,
    role, ...): an int is written as one u64, a str as a string, a list[int] as 32-bit
    cells. `reserved` is written verbatim as the reservation map (the special pages, see
    `special_page_reservations`); for a privileged domain it is also /xen `reserved`.
    Keyword-only: seventeen positional fields would be a trap.
    """

    domid: int
    rma_size: int
    memory_bytes: int
    nr_vcpus: int
    htab_log2: int
    shared_info_gpa: int
    console_gpa: int
    console_evtchn: int
    store_gpa: int
    store_evtchn: int
    privileged: bool
    bootargs: str = ""
    clock_hz: int
    timebase_hz: int
    foreign_map: tuple[int, int] | None = None
    workload: dict[str, WorkloadValue] = field(default_factory=dict)
    reserved: tuple[Reservation, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)


def _fail(name: str, value: object, why: str) -> NoReturn:
    shown = f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) else value
    raise ValueError(f"DomainDevtreeSpec.{name} = {shown}: {why}")


def _validate(spec: DomainDevtreeSpec) -> None:
    if not 0 <= spec.domid < DOMID_FIRST_RESERVED:
        _fail("domid", spec.domid, f"must be below DOMID_FIRST_RESERVED {DOMID_FIRST_RESERVED:#x}")
    if spec.rma_size not in RMA_SIZES:
        _fail("rma_size", spec.rma_size, "not an RMA size the 970 can encode in HID4.RMLR")
    if spec.memory_bytes % PAGE_SIZE or spec.memory_bytes < spec.rma_size:
        _fail("memory_bytes", spec.memory_bytes, "must be whole 4 KiB pages and cover the RMA")
    if spec.memory_bytes > GUEST_MEMORY_LIMIT:
        _fail("memory_bytes", spec.memory_bytes, "reaches the foreign map area at 16 GiB")
    if spec.privileged and spec.memory_bytes > IO_HOLE_START:
        _fail("memory_bytes", spec.memory_bytes, "dom0 memory must stay below the 2 GiB I/O hole")
    if not 1 <= spec.nr_vcpus <= MAX_VIRT_CPUS:
        _fail("nr_vcpus", spec.nr_vcpus, f"a domain has 1..{MAX_VIRT_CPUS} VCPUs")
    if not HTAB_LOG2_MIN <= spec.htab_log2 <= HTAB_LOG2_MAX:
        _fail("htab_log2", spec.htab_log2, f"SDR1 allows {HTAB_LOG2_MIN}..{HTAB_LOG2_MAX}")
    pages: dict[int, str] = {}
    for name in ("shared_info_gpa", "console_gpa", "store_gpa"):
        gpa = getattr(spec, name)
        # Special pages sit at the top of the RMA: the guest reaches them in real mode.
        if gpa % PAGE_SIZE or not 0 < gpa <= spec.rma_size - PAGE_SIZE:
            _fail(name, gpa, "must be a page-aligned, non-zero address inside the RMA")
        if gpa in pages:
            _fail(name, gpa, f"is the same page as {pages[gpa]}")
        pages[gpa] = name
    for name in ("console_evtchn", "store_evtchn"):
        port = getattr(spec, name)
        if not 0 <= port < NR_EVENT_CHANNELS:
            _fail(name, port, f"event channel ports are 0..{NR_EVENT_CHANNELS - 1}")
    if not spec.bootargs.isascii() or "\0" in spec.bootargs:
        _fail("bootargs", repr(spec.bootargs), "must be ASCII without NUL characters")
    for name in ("clock_hz", "timebase_hz"):
        value = getattr(spec, name)
        if not 0 < value < 1 << 32:
            _fail(name, value, "must fit one 32-bit cell")
    if spec.privileged != (spec.foreign_map is not None):
        _fail("foreign_map", spec.foreign_map, "required for a privileged domain, else None")
    if spec.foreign_map is not None:
        shift, slots = spec.foreign_map
        if not 0 < shift < 52 or slots <= 0:
            _fail("foreign_map", spec.foreign_map, "needs a pfn bit in 1..51 and slots > 0")
    for base, size in spec.reserved:
        if size <= 0 or base < 0 or base + size > spec.memory_bytes:
            _fail("reserved", (base, size), "each entry needs size > 0 inside the domain")
    for key, value in spec.workload.items():
        _validate_workload_entry(key, value)


def workload_instance(
    kind: str, instance: int, params: dict[str, WorkloadValue]
) -> dict[str, WorkloadValue]:
    """One workload's parameters as `/xen/workload` properties `<kind>.<instance>.<key>`
    (a domain may run several workloads of one kind, e.g. blockio on two vbds)."""
    return {f"{kind}.{instance}.{key}": value for key, value in params.items()}


def workload_groups(
    props: dict[str, WorkloadValue], kind: str
) -> dict[int, dict[str, WorkloadValue]]:
    """The inverse of `workload_instance`: `{instance: {key: value}}` for `kind`."""
    groups: dict[int, dict[str, WorkloadValue]] = {}
    prefix = kind + "."
    for name, value in props.items():
        if not name.startswith(prefix):
            continue
        instance, _, key = name[len(prefix) :].partition(".")
        if instance.isdigit() and key:
            groups.setdefault(int(instance), {})[key] = value
    return groups


def _validate_workload_entry(key: str, value: object) -> None:
    if not 0 < len(key) <= 31 or not set(key) <= _PROP_NAME_CHARS:
        _fail("workload", repr(key), "keys must be 1..31 devtree property-name characters")
    if key in _WORKLOAD_RESERVED_NAMES:
        _fail("workload", repr(key), "key is reserved in the workload node")
    if isinstance(value, bool):
        _fail("workload", f"{key}={value!r}", "bool is ambiguous; use 0 or 1")
    elif isinstance(value, int):
        if not 0 <= value < 1 << 64:
            _fail("workload", f"{key}={value}", "int values are unsigned 64-bit")
    elif isinstance(value, str):
        if not value.isascii() or "\0" in value:
            _fail("workload", f"{key}={value!r}", "strings must be ASCII without NUL")
    elif isinstance(value, list):
        if not all(type(v) is int and 0 <= v < 1 << 32 for v in value):
            _fail("workload", f"{key}={value!r}", "lists hold unsigned 32-bit ints")
    else:
        _fail("workload", f"{key}={value!r}", "values are int, str or list[int]")


def special_page_reservations(*gpas: int) -> tuple[Reservation, ...]:
    """Reservation entries for special pages (shared_info, console, store), lowest first."""
    return tuple((gpa, PAGE_SIZE) for gpa in sorted(gpas))


def _event_node(name: str, gpa: int, evtchn: int) -> fdt.Node:
    return dtb_node(
        name, [("reg", encode_u64s(gpa, PAGE_SIZE)), ("interrupts", encode_cells(evtchn, 0))]
    )


def _workload_node(workload: dict[str, WorkloadValue]) -> fdt.Node:
    props: list[tuple[str, bytes]] = [("compatible", encode_string(WORKLOAD_COMPATIBLE))]
    types: list[str] = []
    for key, value in workload.items():
        if isinstance(value, int):
            props.append((key, encode_u64s(value)))
            types.append(f"{key}=int")
        elif isinstance(value, str):
            props.append((key, encode_string(value)))
            types.append(f"{key}=str")
        else:
            props.append((key, encode_cells(*value)))
            types.append(f"{key}=list")
    props.append((WORKLOAD_TYPES_PROP, b"".join(encode_string(t) for t in types)))
    return dtb_node("workload", props)


def xen_node(spec: DomainDevtreeSpec) -> fdt.Node:
    """The /xen node: domain id, shared_info, console and store, privilege, workload."""
    props: list[tuple[str, bytes]] = [
        ("compatible", encode_string(XEN_COMPATIBLE)),
        ("reg", encode_u64s(spec.domid, 0)),
        ("shared-info", encode_u64s(spec.shared_info_gpa, PAGE_SIZE)),
        ("linux,phandle", encode_cells(XEN_PHANDLE)),
        # Children's reg are u64 pairs; say so rather than rely on the old OF default.
        ("#address-cells", encode_cells(2)),
        ("#size-cells", encode_cells(2)),
    ]
    if spec.foreign_map is not None:
        props += [
            ("privileged", b""),
            ("initdomain", b""),
            ("foreign-map", encode_u64s(*spec.foreign_map)),
            ("reserved", encode_u64s(*(v for entry in spec.reserved for v in entry))),
        ]
    children = [
        _event_node("console", spec.console_gpa, spec.console_evtchn),
        _event_node("store", spec.store_gpa, spec.store_evtchn),
    ]
    if spec.workload:
        children.append(_workload_node(spec.workload))
    return dtb_node("xen", props, children)


def _cpu_node(index: int, spec: DomainDevtreeSpec) -> fdt.Node:
    pft = [("ibm,pft-size", encode_cells(0, spec.htab_log2))]
    return dtb_node(
        f"{CPU_NODE_PREFIX}@{index:x}",
        cpu_properties(index, spec.clock_hz, spec.timebase_hz, pft),
    )


def chosen_node(spec: DomainDevtreeSpec) -> fdt.Node:
    """/chosen: bootargs, the console as stdout, /xen as the interrupt controller."""
    return dtb_node(
        "chosen",
        [
            ("bootargs", encode_string(spec.bootargs)),
            ("linux,stdout-path", encode_string("/xen/console")),
            ("interrupt-controller", encode_cells(XEN_PHANDLE)),
        ],
    )


def check_devtree_size(blob: bytes, domid: int) -> bytes:
    """`blob` if it fits DEVTREE_MAX_BYTES, else ValueError naming the domain."""
    if len(blob) > DEVTREE_MAX_BYTES:
        raise ValueError(
            f"domain {domid} devtree is {len(blob)} bytes (header, reservation map, "
            f"structure and strings), more than DEVTREE_MAX_BYTES = {DEVTREE_MAX_BYTES}; "
            "shorten bootargs or the workload parameters"
        )
    return blob


def build_domain_devtree(spec: DomainDevtreeSpec) -> bytes:
    """The v17 DTB for a domain; ValueError if it exceeds DEVTREE_MAX_BYTES."""
    memories = [
        dtb_node(
            "memory@0",
            [("device_type", encode_string("memory")), ("reg", encode_u64s(0, spec.rma_size))],
        )
    ]
    rest = spec.memory_bytes - spec.rma_size
    if rest > 0:
        memories.append(
            dtb_node(
                f"memory@{spec.rma_size:x}",
                [
                    ("device_type", encode_string("memory")),
                    ("reg", encode_u64s(spec.rma_size, rest)),
                ],
            )
        )
    cpus = dtb_node(
        "cpus",
        [
            ("#address-cells", encode_cells(1)),
            ("#size-cells", encode_cells(0)),
            ("smp-enabled", b""),
        ],
        [_cpu_node(i, spec) for i in range(spec.nr_vcpus)],
    )
    root = dtb_node(
        "/",
        [
            ("#address-cells", encode_cells(2)),
            ("#size-cells", encode_cells(2)),
            ("model", encode_string(DOMAIN_MODEL)),
            ("compatible", encode_string(DOMAIN_COMPATIBLE)),
            ("device_type", encode_string(DOMAIN_DEVICE_TYPE)),
        ],
        [chosen_node(spec), xen_node(spec), *memories, cpus],
    )
    return check_devtree_size(write_dtb(root, spec.reserved), spec.domid)


def _u64_pair(node: fdt.Node, name: str, where: str) -> tuple[int, int]:
    values = decode_u64s(require_property(node, name, where), f"{where} {name}")
    if len(values) != 2:
        raise ValueError(f"{where} {name} holds {len(values)} 64-bit values, expected 2")
    return values[0], values[1]


def _page_and_port(node: fdt.Node, where: str) -> tuple[int, int]:
    gpa, size = _u64_pair(node, "reg", where)
    if size != PAGE_SIZE:
        raise ValueError(f"{where} reg size is {size:#x}, expected one 4 KiB page")
    cells = decode_cells(require_property(node, "interrupts", where), f"{where} interrupts")
    if len(cells) != 2:
        raise ValueError(f"{where} interrupts holds {len(cells)} cells, expected 2")
    return gpa, cells[0]


def _parse_workload(node: fdt.Node) -> dict[str, WorkloadValue]:
    where = "/xen/workload"
    types_raw = require_property(node, WORKLOAD_TYPES_PROP, where)
    workload: dict[str, WorkloadValue] = {}
    for entry in decode_strings(types_raw, f"{where} {WORKLOAD_TYPES_PROP}"):
        key, _sep, kind = entry.partition("=")
        raw = require_property(node, key, where)
        what = f"{where} {key}"
        if kind == "int":
            values = decode_u64s(raw, what)
            if len(values) != 1:
                raise ValueError(f"{what}: expected one 64-bit value, found {len(values)}")
            workload[key] = values[0]
        elif kind == "str":
            workload[key] = decode_string(raw, what)
        elif kind == "list":
            workload[key] = decode_cells(raw, what)
        else:
            raise ValueError(f"{what}: unknown workload type {kind!r}")
    return workload


def _usable_ranges(mem: fdt.Node) -> list[tuple[int, int]]:
    """A memory node's RAM for this kernel: `linux,usable-memory` when present (an empty
    one gives none), else `reg`, as Linux's early_init_dt_scan_memory reads it."""
    where = f"/{mem.name} {USABLE_MEMORY_PROP}"
    raw = property_bytes(mem, USABLE_MEMORY_PROP)
    if raw is None:
        return read_reg_ranges(mem, f"/{mem.name}")
    values = decode_u64s(raw, where)
    if len(values) % 2:
        raise ValueError(f"{where} holds an odd number of 64-bit values")
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def parse_domain_devtree(blob: bytes) -> DomainDevtreeSpec:
    """Read a domain DTB back into its spec (the inverse of build_domain_devtree).

    `blob` may be longer than the tree (e.g. the whole 16 KiB region read from guest
    memory); the header's total size decides. ValueError on anything malformed.
    """
    blob = bytes(blob)
    if len(blob) >= 8:
        total = int.from_bytes(blob[4:8], "big")
        if total > DEVTREE_MAX_BYTES:
            raise ValueError(
                f"domain devtree header claims {total} bytes, more than "
                f"DEVTREE_MAX_BYTES = {DEVTREE_MAX_BYTES}"
            )
    root, reserved = read_dtb(blob)

    chosen = require_node(root, "chosen", "/chosen")
    bootargs = decode_string(require_property(chosen, "bootargs", "/chosen"), "/chosen bootargs")

    xen = require_node(root, "xen", "/xen")
    domid, zero = _u64_pair(xen, "reg", "/xen")
    if zero != 0:
        raise ValueError(f"/xen reg size is {zero:#x}, expected 0")
    shared_info_gpa, size = _u64_pair(xen, "shared-info", "/xen")
    if size != PAGE_SIZE:
        raise ValueError(f"/xen shared-info size is {size:#x}, expected one 4 KiB page")
    privileged = property_bytes(xen, "privileged") is not None
    foreign_map: tuple[int, int] | None = None
    if property_bytes(xen, "foreign-map") is not None:
        foreign_map = _u64_pair(xen, "foreign-map", "/xen")
    if privileged:
        listed = decode_u64s(require_property(xen, "reserved", "/xen"), "/xen reserved")
        flat = [v for entry in reserved for v in entry]
        if listed != flat:
            raise ValueError("/xen reserved does not match the devtree reservation map")
    console_gpa, console_evtchn = _page_and_port(
        require_node(xen, "console", "/xen/console"), "/xen/console"
    )
    store_gpa, store_evtchn = _page_and_port(require_node(xen, "store", "/xen/store"), "/xen/store")
    workload_node = xen.get_subnode("workload")
    workload = {} if workload_node is None else _parse_workload(workload_node)

    ranges = sorted(r for mem in nodes_of_type(root, "memory") for r in _usable_ranges(mem))
    if not ranges or ranges[0][0] != 0:
        raise ValueError("domain devtree has no /memory@0 (the RMA)")
    for (base, size), (next_base, _next_size) in pairwise(ranges):
        if base + size != next_base:
            raise ValueError(f"domain memory is not contiguous at {base + size:#x}")
    rma_size = ranges[0][1]
    memory_bytes = sum(size for _base, size in ranges)

    cpus = nodes_of_type(require_node(root, "cpus", "/cpus"), "cpu")
    by_reg = {cpu_reg(c): c for c in cpus}
    if not cpus or sorted(by_reg) != list(range(len(cpus))):
        raise ValueError(f"domain devtree CPU reg values {sorted(by_reg)} are not 0..n-1")
    # A domU's /cpus lists its VCPUs; dom0's lists the machine's CPUs and /xen says how
    # many VCPUs dom0 has.
    vcpus_raw = property_bytes(xen, DOM0_VCPUS_PROP)
    nr_vcpus = len(cpus) if vcpus_raw is None else decode_cell(vcpus_raw, "/xen vcpus")
    boot = by_reg[0]
    where = f"/cpus/{boot.name}"
    pft = decode_cells(require_property(boot, "ibm,pft-size", where), f"{where} ibm,pft-size")
    if len(pft) != 2:
        raise ValueError(f"{where} ibm,pft-size holds {len(pft)} cells, expected 2")

    return DomainDevtreeSpec(
        domid=domid,
        rma_size=rma_size,
        memory_bytes=memory_bytes,
        nr_vcpus=nr_vcpus,
        htab_log2=pft[1],
        shared_info_gpa=shared_info_gpa,
        console_gpa=console_gpa,
        console_evtchn=console_evtchn,
        store_gpa=store_gpa,
        store_evtchn=store_evtchn,
        privileged=privileged,
        bootargs=bootargs,
        clock_hz=decode_cell(require_property(boot, "clock-frequency", where), where),
        timebase_hz=decode_cell(require_property(boot, "timebase-frequency", where), where),
        foreign_map=foreign_map,
        workload=workload,
        reserved=reserved,
    )


def domain_spec(
    *,
    domid: int,
    rma: int,
    memory: int,
    vcpus: int,
    console_evtchn: int,
    store_evtchn: int,
    privileged: bool,
    clock_hz: int,
    timebase_hz: int,
    workload: dict[str, int | str | list[int]],
) -> DomainDevtreeSpec:
    """The devtree of a domain laid out the standard way: special pages at the top of the
    RMA (reserved), HTAB sized from memory, console on xvc0; dom0 gets the foreign map."""
    layout = rma_layout(rma)
    return DomainDevtreeSpec(
        domid=domid,
        rma_size=rma,
        memory_bytes=memory,
        nr_vcpus=vcpus,
        htab_log2=htab_bytes_for(memory).bit_length() - 1,
        shared_info_gpa=layout["shared_info"],
        console_gpa=layout["console"],
        console_evtchn=console_evtchn,
        store_gpa=layout["xenstore"],
        store_evtchn=store_evtchn,
        privileged=privileged,
        bootargs="console=xvc0",
        clock_hz=clock_hz,
        timebase_hz=timebase_hz,
        foreign_map=DOM0_FOREIGN_MAP if privileged else None,
        workload=workload,
        reserved=tuple(sorted((gpa, 4096) for gpa in layout.values())),
    )
