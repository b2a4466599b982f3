"""dom0's devtree: the firmware's tree, fixed up by Xen (ofd_dom0_fixup).

A domU's tree is written from nothing by the toolstack; dom0's starts from the machine
devtree the firmware gave Xen, so dom0 sees the box it drives: the host bridge (U3/U4 HT)
and the MPIC, the machine's physical CPUs and its RAM.  What Xen changes follows
xen/arch/powerpc/ofd_fixup.c and ofd_fixup_memory.c of the 3.0.4/3.1 tree:

- /cpus gets `smp-enabled`, and the boot CPU (reg 0) `ibm,pft-size` for dom0's HTAB.
  The real port pruned every CPU node but the boot CPU (its Linux brought VCPUs up with
  vcpu_op, not from the tree); here every physical CPU stays, as XEN-PPC-FACTS.md asks
  ("dom0 additionally sees the host bridges, the real CPUs and memory"), and dom0's own
  VCPU count, which may differ from the machine's CPU count, is /xen `xen970,vcpus`.
- /memory: the real port replaced the firmware's memory nodes by dom0's pseudo-physical
  RMA and extents.  Here each machine memory node keeps its `reg` (the machine's RAM,
  both sides of the 2-4 GiB I/O hole) and gains `linux,usable-memory`: the part that is
  dom0's own RAM, RMA first, then the extents (empty on a node dom0 has none of).  Linux
  uses `linux,usable-memory` in place of `reg`, so the kernel still finds exactly its
  memory, and dom0 (to whom a machine frame beyond its own memory is mapped 1:1, "MFN
  mappings are for dom0") learns where the machine's RAM is.
- /dart and /rtas are pruned (Xen owns the IOMMU; dom0 gets TCE hcalls instead);
  /chosen and /xen are dom0's; the root gains `ibm,partition-no` and
  `ibm,partition-name`.
"""

from __future__ import annotations

from typing import Final

import fdt

from framework.hw970.devtree import (
    cpu_reg,
    dtb_node,
    encode_cells,
    encode_string,
    encode_u64s,
    nodes_of_type,
    property_bytes,
    read_dtb,
    read_reg_ranges,
    require_node,
    write_dtb,
)
from framework.xen.public.devtree import (
    DOM0_VCPUS_PROP,
    USABLE_MEMORY_PROP,
    DomainDevtreeSpec,
    check_devtree_size,
    chosen_node,
    xen_node,
)

#: Firmware nodes ofd_dom0_fixup removes: Xen drives the DART itself, and RTAS is Xen's.
PRUNED_NODES: Final = ("dart", "rtas")
PARTITION_NAME: Final = "dom0"


def _copy(node: fdt.Node, extra: list[tuple[str, bytes]] | None = None) -> fdt.Node:
    """A deep copy of a firmware node with its exact property bytes, plus `extra`."""
    props = [(p.name, property_bytes(node, p.name) or b"") for p in node.props]
    return dtb_node(node.name, props + (extra or []), [_copy(child) for child in node.nodes])


def _dom0_ranges(spec: DomainDevtreeSpec) -> list[tuple[int, int]]:
    """dom0's RAM as Xen placed it: the RMA from 0, then the 16 MiB extents after it."""
    ranges = [(0, spec.rma_size)]
    if spec.memory_bytes > spec.rma_size:
        ranges.append((spec.rma_size, spec.memory_bytes - spec.rma_size))
    return ranges


def _usable_within(reg: list[tuple[int, int]], own: list[tuple[int, int]]) -> list[int]:
    """The parts of dom0's ranges `own` inside a memory node's `reg`, as flat u64 pairs."""
    flat: list[int] = []
    for base, size in own:
        for rbase, rsize in reg:
            lo, hi = max(base, rbase), min(base + size, rbase + rsize)
            if lo < hi:
                flat += [lo, hi - lo]
    return flat


def _cpus(node: fdt.Node, spec: DomainDevtreeSpec) -> fdt.Node:
    cpus = _copy(node, [("smp-enabled", b"")])
    for cpu in nodes_of_type(cpus, "cpu"):
        if cpu_reg(cpu) == 0:
            # The boot CPU carries the partition's page-table size (ofd_cpus_props).
            cpu.append(fdt.PropBytes("ibm,pft-size", data=encode_cells(0, spec.htab_log2)))
    return cpus


def build_dom0_devtree(machine_dtb: bytes, spec: DomainDevtreeSpec) -> bytes:
    """dom0's DTB from the firmware's `machine_dtb` and dom0's `spec` (privileged).

    ValueError if the spec is not dom0's, if part of dom0's RAM is not machine RAM in the
    firmware's /memory, or if the tree exceeds DEVTREE_MAX_BYTES."""
    if not spec.privileged:
        raise ValueError(
            f"domain {spec.domid} is not privileged: only dom0's tree is the firmware's"
        )
    machine, _reserved = read_dtb(machine_dtb)
    require_node(machine, "cpus", "/cpus")
    memories = {id(n) for n in nodes_of_type(machine, "memory")}
    own = _dom0_ranges(spec)
    covered = 0
    children: list[fdt.Node] = []
    for node in machine.nodes:
        if node.name.partition("@")[0] in PRUNED_NODES:
            continue
        if node.name == "cpus":
            children.append(_cpus(node, spec))
        elif id(node) in memories:
            usable = _usable_within(read_reg_ranges(node, f"/{node.name}"), own)
            covered += sum(usable[1::2])
            children.append(_copy(node, [(USABLE_MEMORY_PROP, encode_u64s(*usable))]))
        else:
            children.append(_copy(node))  # the host bridge, the MPIC: as the firmware has them
    if covered != spec.memory_bytes:
        raise ValueError(
            f"dom0's {spec.memory_bytes:#x} bytes from guest-physical 0 are not all in the "
            f"firmware's /memory ranges (only {covered:#x} are)"
        )
    xen = xen_node(spec)
    xen.append(fdt.PropBytes(DOM0_VCPUS_PROP, data=encode_cells(spec.nr_vcpus)))
    root_props = [(p.name, property_bytes(machine, p.name) or b"") for p in machine.props]
    root_props += [
        ("ibm,partition-no", encode_cells(spec.domid)),
        ("ibm,partition-name", encode_string(PARTITION_NAME)),
    ]
    root = dtb_node("/", root_props, [*children, chosen_node(spec), xen])
    return check_devtree_size(write_dtb(root, spec.reserved), spec.domid)
