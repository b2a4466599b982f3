"""dom0's devtree is the firmware's, fixed up by Xen (ofd_dom0_fixup): dom0 sees the host
bridge, the machine's physical CPUs and the machine's RAM, and still boots on its own
memory and VCPUs (XEN-PPC-FACTS.md: "dom0 additionally sees the host bridges, the real
CPUs and memory").  The tree is read from dom0's memory, where Xen wrote it."""

from __future__ import annotations

from collections.abc import Iterator

import fdt
import pytest

from framework.guest.runtime import DEVTREE_GPA
from framework.hw970.devtree import (
    MachineDevtreeSpec,
    build_machine_devtree,
    decode_cells,
    decode_u64s,
    property_bytes,
    read_dtb,
)
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.dom0_devtree import build_dom0_devtree
from framework.xen.public.devtree import DomainDevtreeSpec, domain_spec, parse_domain_devtree

GiB = 1 << 30
MiB = 1 << 20

#: A 4 GiB, 2-CPU box whose dom0 has one VCPU (so the CPU and VCPU counts differ).
FOUR_GIB_TWO_CPUS = """\
name: dom0-devtree
duration: 5ms
machine: {cpus: 2, memory: 4GiB}
dom0: {memory: 256MiB, vcpus: 1}
"""


def _dom0_blob(sim: Simulation) -> bytes:
    dom0 = sim.xen.domains[0]
    return sim.machine.memory.read(dom0.gpa_to_maddr(DEVTREE_GPA), 16384)


def _u64_pairs(raw: bytes | None) -> list[tuple[int, int]]:
    assert raw is not None
    values = decode_u64s(raw, "test")
    return list(zip(values[::2], values[1::2], strict=True))


def _memory_nodes(root: fdt.Node) -> list[fdt.Node]:
    return [n for n in root.nodes if property_bytes(n, "device_type") == b"memory\0"]


@pytest.fixture(scope="module")
def booted() -> Iterator[Simulation]:
    sim = Simulation(parse_scenario(FOUR_GIB_TWO_CPUS, "dom0-devtree"), record=False)
    sim.run()
    yield sim
    sim.close()


def test_dom0_sees_the_host_bridge_and_the_mpic(booted: Simulation) -> None:
    root, _ = read_dtb(_dom0_blob(booted))
    by_type = {property_bytes(n, "device_type"): n for n in root.nodes}
    ht = by_type[b"ht\0"]  # the U3 HyperTransport host bridge of the Maple board
    assert ht.name == "ht@0"
    assert property_bytes(ht, "compatible") == b"u3-ht\0"
    mpic = by_type[b"open-pic\0"]
    assert _u64_pairs(property_bytes(mpic, "reg")) == [(0xF8040000, 0x40000)]
    assert property_bytes(root, "model") == b"Momentum,Maple\0"  # the board's, not a domU's
    assert property_bytes(root, "ibm,partition-name") == b"dom0\0"


def test_dom0_sees_every_physical_cpu_not_its_vcpu_count(booted: Simulation) -> None:
    root, _ = read_dtb(_dom0_blob(booted))
    cpus = root.get_subnode("cpus")
    assert cpus is not None
    nodes = [n for n in cpus.nodes if property_bytes(n, "device_type") == b"cpu\0"]
    assert [n.name for n in nodes] == ["PowerPC,970FX@0", "PowerPC,970FX@1"]
    assert [decode_cells(property_bytes(n, "reg") or b"", "reg") for n in nodes] == [[0], [1]]
    # Only the boot CPU carries the partition's HTAB size (ofd_cpus_props).
    assert [property_bytes(n, "ibm,pft-size") is not None for n in nodes] == [True, False]
    assert booted.xen.ncpus == 2
    assert len(booted.xen.domains[0].vcpus) == 1


def test_dom0_memory_nodes_are_the_machine_ram_ranges(booted: Simulation) -> None:
    root, _ = read_dtb(_dom0_blob(booted))
    regs = [r for n in _memory_nodes(root) for r in _u64_pairs(property_bytes(n, "reg"))]
    # 4 GiB of RAM: [0, 2 GiB) and, past the 2-4 GiB I/O hole, [4 GiB, 6 GiB).
    assert sorted(regs) == [(0, 1 << 31), (1 << 32, 1 << 31)]
    assert sorted(regs) == booted.machine.memory.ranges


def test_dom0_kernel_still_finds_its_own_memory_and_vcpus(booted: Simulation) -> None:
    root, _ = read_dtb(_dom0_blob(booted))
    usable = {
        n.name: _u64_pairs(property_bytes(n, "linux,usable-memory")) for n in _memory_nodes(root)
    }
    # dom0's 64 MiB RMA at 0, then its 16 MiB extents up to 256 MiB; none above the hole.
    assert usable == {
        "memory@0": [(0, 64 * MiB), (64 * MiB, 192 * MiB)],
        "memory@100000000": [],
    }
    spec = parse_domain_devtree(_dom0_blob(booted))
    assert (spec.rma_size, spec.memory_bytes, spec.nr_vcpus) == (64 * MiB, 256 * MiB, 1)
    assert spec.privileged and spec.foreign_map == (22, 1024)
    assert spec.shared_info_gpa == 0x3FFF000
    assert booted.console_lines(0)[0] == "xen970 kernel: domain 0, 1 VCPU(s), 256 MiB"


def test_dom0_with_more_vcpus_than_cpus_brings_them_all_up() -> None:
    text = FOUR_GIB_TWO_CPUS.replace("{cpus: 2, memory: 4GiB}", "{cpus: 1, memory: 1GiB}")
    sim = Simulation(parse_scenario(text.replace("vcpus: 1", "vcpus: 3"), "x"), record=False)
    try:
        sim.run()
        root, _ = read_dtb(_dom0_blob(sim))
        cpus = root.get_subnode("cpus")
        assert cpus is not None and [n.name for n in cpus.nodes] == ["PowerPC,970FX@0"]
        assert [r for n in _memory_nodes(root) for r in _u64_pairs(property_bytes(n, "reg"))] == [
            (0, 1 << 30)
        ]
        assert parse_domain_devtree(_dom0_blob(sim)).nr_vcpus == 3
        assert [v.is_up for v in sim.xen.domains[0].vcpus] == [True, True, True]
    finally:
        sim.close()


def _spec(memory: int, privileged: bool = True) -> DomainDevtreeSpec:
    return domain_spec(
        domid=0 if privileged else 1,
        rma=64 * MiB,
        memory=memory,
        vcpus=1,
        console_evtchn=0,
        store_evtchn=0,
        privileged=privileged,
        clock_hz=1_800_000_000,
        timebase_hz=33_333_333,
        workload={},
    )


def test_dom0_larger_than_the_machine_ram_is_refused() -> None:
    machine = build_machine_devtree(
        MachineDevtreeSpec(ncpus=1, memory_bytes=128 * MiB, clock_hz=1, timebase_hz=1)
    )
    with pytest.raises(ValueError, match="not all in the firmware's /memory"):
        build_dom0_devtree(machine, _spec(256 * MiB))
    with pytest.raises(ValueError, match="not privileged"):
        build_dom0_devtree(machine, _spec(64 * MiB, privileged=False))
