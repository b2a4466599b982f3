"""The domain devtree a guest finds at r3, read back with the fdt library directly."""

from __future__ import annotations

import dataclasses
import struct

import fdt
import pytest

from framework.xen.public.arch_powerpc import DOM0_FOREIGN_MAP
from framework.xen.public.devtree import (
    DEVTREE_MAX_BYTES,
    DomainDevtreeSpec,
    build_domain_devtree,
    parse_domain_devtree,
    special_page_reservations,
)

MIB = 1 << 20
RMA = 64 * MIB
SHARED_INFO, CONSOLE, STORE = 0x3FFF000, 0x3FFE000, 0x3FFD000


def library_parse(blob: bytes) -> tuple[fdt.FDT, list[tuple[int, int]]]:
    """fdt.parse_dtb plus its reservation map, undoing its append to the shared list."""
    shared = fdt.FDT.__init__.__defaults__[1]
    before = len(shared)
    tree = fdt.parse_dtb(blob)
    entries = [(e["address"], e["size"]) for e in shared[before:]]
    del shared[before:]
    return tree, entries


def words(tree: fdt.FDT, path: str, name: str) -> list[int]:
    prop = tree.get_property(name, path)
    assert isinstance(prop, fdt.PropWords), f"{path} {name} is {type(prop).__name__}"
    return list(prop.data)


def text(tree: fdt.FDT, path: str, name: str) -> str:
    prop = tree.get_property(name, path)
    assert isinstance(prop, fdt.PropStrings), f"{path} {name} is {type(prop).__name__}"
    assert len(prop.data) == 1
    return prop.data[0]


def u64s(cells: list[int]) -> list[int]:
    return [(cells[i] << 32) | cells[i + 1] for i in range(0, len(cells), 2)]


def domu(**changes: object) -> DomainDevtreeSpec:
    spec = DomainDevtreeSpec(
        domid=3,
        rma_size=RMA,
        memory_bytes=256 * MIB,
        nr_vcpus=1,
        htab_log2=20,
        shared_info_gpa=SHARED_INFO,
        console_gpa=CONSOLE,
        console_evtchn=1,
        store_gpa=STORE,
        store_evtchn=2,
        privileged=False,
        clock_hz=1_800_000_000,
        timebase_hz=33_333_333,
        reserved=special_page_reservations(SHARED_INFO, CONSOLE, STORE),
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def dom0(**changes: object) -> DomainDevtreeSpec:
    spec = domu(
        domid=0,
        memory_bytes=1024 * MIB,
        nr_vcpus=32,
        htab_log2=24,
        privileged=True,
        bootargs="console=xvc0 root=/dev/sda1",
        foreign_map=DOM0_FOREIGN_MAP,
        console_evtchn=3,
        store_evtchn=4,
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec",
    [
        domu(),
        domu(nr_vcpus=32),
        dom0(),
        dom0(nr_vcpus=1),
        domu(memory_bytes=RMA, bootargs="quiet", reserved=()),
        domu(workload={"port": 7, "role": "ping", "peers": [1, 2, 5], "bytes": 1 << 40}),
        domu(workload={"empty": [], "blank": "", "zero": 0}),
    ],
    ids=["domU", "domU-32", "dom0-32", "dom0-1", "rma-only", "workload", "workload-edges"],
)
def test_parse_gives_back_exactly_the_spec(spec: DomainDevtreeSpec) -> None:
    assert parse_domain_devtree(build_domain_devtree(spec)) == spec


def test_blob_is_dtb_v17_with_special_pages_reserved() -> None:
    blob = build_domain_devtree(domu())
    magic, total, *_rest, version, last_comp = struct.unpack_from(">7I", blob)
    assert (magic, total, version, last_comp) == (0xD00DFEED, len(blob), 17, 16)
    _tree, entries = library_parse(blob)
    assert entries == [(STORE, 4096), (CONSOLE, 4096), (SHARED_INFO, 4096)]


def test_root_chosen_and_xen_nodes() -> None:
    tree, _ = library_parse(build_domain_devtree(domu(bootargs="root=/dev/xvda1")))
    assert words(tree, "/", "#address-cells") == [2]
    assert words(tree, "/", "#size-cells") == [2]
    assert text(tree, "/", "model") == "Momentum,Maple-D"
    assert text(tree, "/", "compatible") == "Momentum,Maple"
    assert text(tree, "/", "device_type") == "chrp-but-not-really"

    assert text(tree, "/chosen", "bootargs") == "root=/dev/xvda1"
    assert text(tree, "/chosen", "linux,stdout-path") == "/xen/console"
    assert words(tree, "/chosen", "interrupt-controller") == words(tree, "/xen", "linux,phandle")

    assert text(tree, "/xen", "compatible") == "Xen-3.0-unstable"
    assert u64s(words(tree, "/xen", "reg")) == [3, 0]
    assert u64s(words(tree, "/xen", "shared-info")) == [SHARED_INFO, 4096]

    assert u64s(words(tree, "/xen/console", "reg")) == [CONSOLE, 4096]
    assert words(tree, "/xen/console", "interrupts") == [1, 0]
    assert u64s(words(tree, "/xen/store", "reg")) == [STORE, 4096]
    assert words(tree, "/xen/store", "interrupts") == [2, 0]


def test_empty_bootargs_is_a_lone_nul() -> None:
    tree, _ = library_parse(build_domain_devtree(domu()))
    prop = tree.get_property("bootargs", "/chosen")
    assert isinstance(prop, fdt.PropBytes) and bytes(prop.data) == b"\0"


def test_privilege_properties_only_on_dom0() -> None:
    tree, _ = library_parse(build_domain_devtree(domu()))
    for name in ("privileged", "initdomain", "foreign-map", "reserved"):
        assert not tree.exist_property(name, "/xen"), name

    tree, entries = library_parse(build_domain_devtree(dom0()))
    assert u64s(words(tree, "/xen", "reg")) == [0, 0]
    assert tree.exist_property("privileged", "/xen")
    assert tree.exist_property("initdomain", "/xen")
    assert u64s(words(tree, "/xen", "foreign-map")) == [22, 1024]
    assert u64s(words(tree, "/xen", "reserved")) == [v for entry in entries for v in entry]


def test_memory_nodes_split_at_the_rma() -> None:
    tree, _ = library_parse(build_domain_devtree(domu(memory_bytes=256 * MIB)))
    mems = [n.name for n in tree.root.nodes if n.name.startswith("memory")]
    assert mems == ["memory@0", "memory@4000000"]
    assert u64s(words(tree, "/memory@0", "reg")) == [0, RMA]
    assert u64s(words(tree, "/memory@4000000", "reg")) == [RMA, 192 * MIB]
    for name in mems:
        assert text(tree, f"/{name}", "device_type") == "memory"


def test_rma_only_domain_has_one_memory_node() -> None:
    tree, _ = library_parse(build_domain_devtree(domu(memory_bytes=RMA)))
    assert [n.name for n in tree.root.nodes if n.name.startswith("memory")] == ["memory@0"]


def test_one_cpu_node_per_vcpu() -> None:
    tree, _ = library_parse(build_domain_devtree(dom0(nr_vcpus=32, htab_log2=25)))
    assert words(tree, "/cpus", "#address-cells") == [1]
    assert words(tree, "/cpus", "#size-cells") == [0]
    names = [n.name for n in tree.get_node("/cpus").nodes]
    assert names == [f"PowerPC,970@{i:x}" for i in range(32)]
    for i, name in enumerate(names):
        path = f"/cpus/{name}"
        assert text(tree, path, "device_type") == "cpu"
        assert words(tree, path, "reg") == [i]
        assert words(tree, path, "clock-frequency") == [1_800_000_000]
        assert words(tree, path, "timebase-frequency") == [33_333_333]
        assert words(tree, path, "ibm,pft-size") == [0, 25]


def test_workload_node_is_xen970_extension() -> None:
    tree, _ = library_parse(build_domain_devtree(domu(workload={"port": 7, "role": "pong"})))
    assert text(tree, "/xen/workload", "compatible") == "xen970,workload"
    assert u64s(words(tree, "/xen/workload", "port")) == [7]
    assert text(tree, "/xen/workload", "role") == "pong"

    tree, _ = library_parse(build_domain_devtree(domu()))
    assert not tree.exist_node("/xen/workload")


def _bootargs_for_size(size: int) -> str:
    """Bootargs that make the domU tree exactly `size` bytes (size a multiple of 4)."""
    base = len(build_domain_devtree(domu()))  # bootargs "" holds 1 byte padded to 4
    return "x" * (size - base + 3)


def test_tree_of_exactly_the_limit_is_accepted_one_more_word_is_refused() -> None:
    blob = build_domain_devtree(domu(bootargs=_bootargs_for_size(DEVTREE_MAX_BYTES)))
    assert len(blob) == DEVTREE_MAX_BYTES == 16384
    big = domu(bootargs=_bootargs_for_size(DEVTREE_MAX_BYTES + 4))
    with pytest.raises(ValueError, match=r"16388 bytes .* more than DEVTREE_MAX_BYTES = 16384"):
        build_domain_devtree(big)


def test_oversized_workload_is_refused() -> None:
    with pytest.raises(ValueError, match="DEVTREE_MAX_BYTES"):
        build_domain_devtree(domu(workload={"peers": list(range(4096))}))


def test_parse_refuses_a_header_claiming_more_than_the_limit() -> None:
    blob = bytearray(build_domain_devtree(domu()))
    struct.pack_into(">I", blob, 4, DEVTREE_MAX_BYTES + 8)
    blob += bytes(DEVTREE_MAX_BYTES + 8 - len(blob))
    with pytest.raises(ValueError, match="DEVTREE_MAX_BYTES"):
        parse_domain_devtree(bytes(blob))


def test_parse_reads_a_whole_16k_region_from_guest_memory() -> None:
    blob = build_domain_devtree(dom0())
    region = blob + b"\xee" * (DEVTREE_MAX_BYTES - len(blob))
    assert parse_domain_devtree(region) == dom0()


def test_build_and_parse_leave_the_library_shared_entry_list_alone() -> None:
    shared = fdt.FDT.__init__.__defaults__[1]
    before = list(shared)
    parse_domain_devtree(build_domain_devtree(dom0()))
    assert shared == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"foreign_map": (22, 1024)}, "foreign_map"),
        ({"privileged": True}, "foreign_map"),
        ({"rma_size": 32 * MIB}, "rma_size"),
        ({"memory_bytes": 32 * MIB}, "memory_bytes"),
        ({"memory_bytes": 32 << 30}, "memory_bytes"),
        ({"nr_vcpus": 0}, "nr_vcpus"),
        ({"nr_vcpus": 33}, "nr_vcpus"),
        ({"htab_log2": 17}, "htab_log2"),
        ({"shared_info_gpa": RMA}, "shared_info_gpa"),
        ({"console_gpa": SHARED_INFO}, "console_gpa"),
        ({"store_gpa": STORE + 8}, "store_gpa"),
        ({"store_evtchn": 4096}, "store_evtchn"),
        ({"domid": 0x7FF0}, "domid"),
        ({"bootargs": "caf\u00e9"}, "bootargs"),
        ({"reserved": ((0, 0),)}, "reserved"),
        ({"workload": {"flag": True}}, "workload"),
        ({"workload": {"compatible": "x"}}, "workload"),
        ({"workload": {"bad name": 1}}, "workload"),
        ({"workload": {"peers": [1 << 32]}}, "workload"),
    ],
)
def test_bad_domu_specs_are_refused_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"DomainDevtreeSpec.{field}"):
        domu(**changes)


def test_dom0_memory_must_stay_below_the_io_hole() -> None:
    with pytest.raises(ValueError, match="I/O hole"):
        dom0(memory_bytes=3 << 30)
