"""The machine devtree as Xen's boot sees it, read back with the fdt library directly."""

from __future__ import annotations

import struct

import fdt
import pytest

from framework.hw970.devtree import (
    MPIC_BASE,
    MachineDevtreeSpec,
    MachineInfo,
    build_machine_devtree,
    parse_machine_devtree,
    read_dtb,
)
from framework.hw970.memory import GIB, memory_ranges

CLOCK = 1_800_000_000
TIMEBASE = 33_333_333


def library_parse(blob: bytes) -> fdt.FDT:
    """fdt.parse_dtb, undoing its append to the entries list every FDT() shares."""
    shared = fdt.FDT.__init__.__defaults__[1]
    before = len(shared)
    tree = fdt.parse_dtb(blob)
    del shared[before:]
    return tree


def words(tree: fdt.FDT, path: str, name: str) -> list[int]:
    prop = tree.get_property(name, path)
    assert isinstance(prop, fdt.PropWords), f"{path} {name} is {type(prop).__name__}"
    return list(prop.data)


def text(tree: fdt.FDT, path: str, name: str) -> str:
    prop = tree.get_property(name, path)
    assert isinstance(prop, fdt.PropStrings), f"{path} {name} is {type(prop).__name__}"
    assert len(prop.data) == 1
    return prop.data[0]


def u64_pairs(cells: list[int]) -> list[tuple[int, int]]:
    u64 = [(cells[i] << 32) | cells[i + 1] for i in range(0, len(cells), 2)]
    return [(u64[i], u64[i + 1]) for i in range(0, len(u64), 2)]


def machine(ncpus: int = 2, memory: int = GIB, **kw: object) -> MachineDevtreeSpec:
    return MachineDevtreeSpec(ncpus, memory, CLOCK, TIMEBASE, **kw)  # type: ignore[arg-type]


def test_blob_is_dtb_v17_with_empty_reservation_map() -> None:
    blob = build_machine_devtree(machine())
    magic, total, *_rest, version, last_comp = struct.unpack_from(">7I", blob)
    assert (magic, total, version, last_comp) == (0xD00DFEED, len(blob), 17, 16)
    assert library_parse(blob).entries == []


def test_root_identifies_a_chrp_machine_with_two_cell_addresses() -> None:
    tree = library_parse(build_machine_devtree(machine()))
    assert words(tree, "/", "#address-cells") == [2]
    assert words(tree, "/", "#size-cells") == [2]
    assert text(tree, "/", "model") == "Momentum,Maple"
    assert text(tree, "/", "compatible") == "Momentum,Maple"
    assert text(tree, "/", "device_type") == "chrp"


def test_model_is_configurable_for_a_js21() -> None:
    tree = library_parse(build_machine_devtree(machine(model="IBM,JS21")))
    assert text(tree, "/", "model") == "IBM,JS21"
    assert parse_machine_devtree(build_machine_devtree(machine(model="IBM,JS21"))).model == (
        "IBM,JS21"
    )


@pytest.mark.parametrize("ncpus", [1, 4, 16])
def test_one_970fx_node_per_cpu_with_970fx_caches(ncpus: int) -> None:
    tree = library_parse(build_machine_devtree(machine(ncpus)))
    cpus = tree.get_node("/cpus")
    assert words(tree, "/cpus", "#address-cells") == [1]
    assert words(tree, "/cpus", "#size-cells") == [0]
    assert [n.name for n in cpus.nodes] == [f"PowerPC,970FX@{i:x}" for i in range(ncpus)]
    for i in range(ncpus):
        path = f"/cpus/PowerPC,970FX@{i:x}"
        assert text(tree, path, "device_type") == "cpu"
        assert words(tree, path, "reg") == [i]
        assert words(tree, path, "clock-frequency") == [CLOCK]
        assert words(tree, path, "timebase-frequency") == [TIMEBASE]
        assert tree.exist_property("64-bit", path)
        assert not tree.exist_property("ibm,pft-size", path)
        assert words(tree, path, "d-cache-size") == [32 * 1024]
        assert words(tree, path, "i-cache-size") == [64 * 1024]
        for cache in ("d", "i"):
            assert words(tree, path, f"{cache}-cache-line-size") == [128]
            assert words(tree, path, f"{cache}-cache-block-size") == [128]


@pytest.mark.parametrize("memory", [256 << 20, 2 * GIB])
def test_memory_up_to_2gib_is_one_node_at_zero(memory: int) -> None:
    tree = library_parse(build_machine_devtree(machine(memory=memory)))
    mems = [n.name for n in tree.root.nodes if n.name.startswith("memory")]
    assert mems == ["memory@0"]
    assert text(tree, "/memory@0", "device_type") == "memory"
    assert u64_pairs(words(tree, "/memory@0", "reg")) == [(0, memory)]


def test_memory_above_2gib_skips_the_io_hole() -> None:
    tree = library_parse(build_machine_devtree(machine(memory=6 * GIB)))
    mems = [n.name for n in tree.root.nodes if n.name.startswith("memory")]
    assert mems == ["memory@0", "memory@100000000"]
    assert u64_pairs(words(tree, "/memory@0", "reg")) == [(0, 2 * GIB)]
    assert u64_pairs(words(tree, "/memory@100000000", "reg")) == [(4 * GIB, 4 * GIB)]
    assert text(tree, "/memory@100000000", "device_type") == "memory"
    assert memory_ranges(6 * GIB) == [(0, 2 * GIB), (4 * GIB, 4 * GIB)]


def test_mpic_node_describes_an_open_pic() -> None:
    tree = library_parse(build_machine_devtree(machine(mpic_sources=128)))
    path = f"/interrupt-controller@{MPIC_BASE:x}"
    assert path == "/interrupt-controller@f8040000"
    assert text(tree, path, "compatible") == "open-pic"
    assert text(tree, path, "device_type") == "open-pic"
    assert tree.exist_property("interrupt-controller", path)
    assert words(tree, path, "#interrupt-cells") == [2]
    assert u64_pairs(words(tree, path, "reg")) == [(0xF804_0000, 0x4_0000)]
    assert words(tree, path, "last-interrupt-source") == [127]


def test_host_bridge_stub() -> None:
    tree = library_parse(build_machine_devtree(machine()))
    assert text(tree, "/ht@0", "device_type") == "ht"


def test_parse_gives_what_xen_boot_needs() -> None:
    info = parse_machine_devtree(build_machine_devtree(machine(4, 3 * GIB, mpic_sources=256)))
    assert info == MachineInfo(
        ncpus=4,
        memory_ranges=[(0, 2 * GIB), (4 * GIB, GIB)],
        clock_hz=CLOCK,
        timebase_hz=TIMEBASE,
        mpic_sources=256,
        mpic_base=MPIC_BASE,
        model="Momentum,Maple",
    )
    assert info.memory_bytes == 3 * GIB


def test_build_and_parse_leave_the_library_shared_entry_list_alone() -> None:
    shared = fdt.FDT.__init__.__defaults__[1]
    before = list(shared)
    parse_machine_devtree(build_machine_devtree(machine()))
    assert shared == before


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"ncpus": 0}, "ncpus"),
        ({"ncpus": 33}, "ncpus"),
        ({"memory_bytes": 0}, "memory_bytes"),
        ({"memory_bytes": GIB + 100}, "memory_bytes"),
        ({"memory_bytes": 1 << 42}, "memory_bytes"),
        ({"clock_hz": 1 << 32}, "clock_hz"),
        ({"timebase_hz": 0}, "timebase_hz"),
        ({"mpic_sources": 0}, "mpic_sources"),
        ({"mpic_sources": 2049}, "mpic_sources"),
        ({"model": ""}, "model"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(kw: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "ncpus": 2,
        "memory_bytes": GIB,
        "clock_hz": CLOCK,
        "timebase_hz": TIMEBASE,
    }
    args.update(kw)
    with pytest.raises(ValueError, match=f"MachineDevtreeSpec.{field}"):
        MachineDevtreeSpec(**args)  # type: ignore[arg-type]


def test_parse_refuses_a_blob_that_is_not_a_dtb() -> None:
    blob = bytearray(build_machine_devtree(machine()))
    blob[0] ^= 0xFF
    with pytest.raises(ValueError, match="magic"):
        parse_machine_devtree(bytes(blob))
    with pytest.raises(ValueError, match="header"):
        parse_machine_devtree(b"\xd0\x0d")


def test_parse_refuses_a_tree_without_an_mpic() -> None:
    tree = library_parse(build_machine_devtree(machine()))
    tree.root.remove_subnode(f"interrupt-controller@{MPIC_BASE:x}")
    tree.entries = []
    with pytest.raises(ValueError, match="open-pic"):
        parse_machine_devtree(tree.to_dtb(version=17))


def test_read_dtb_returns_the_reservation_map() -> None:
    tree = library_parse(build_machine_devtree(machine()))
    tree.entries = [{"address": 0x1000, "size": 0x2000}]
    root, reservations = read_dtb(tree.to_dtb(version=17))
    assert reservations == ((0x1000, 0x2000),)
    assert root.get_subnode("cpus") is not None
