"""The 970 and Xen limits a scenario is checked against, before anything runs.

Each limit says where it comes from; the models and cross-field rules only name them.
"""

from __future__ import annotations

from typing import Final

from framework.hw970.devtree import PHYS_ADDR_LIMIT
from framework.hw970.memory import IO_HOLE_END, IO_HOLE_START, PAGE_SIZE, memory_ranges
from framework.hw970.mmu import RMA_SIZES
from framework.hw970.params import MAX_CPUS
from framework.xen.public.arch_powerpc import EXTENT_BYTES as EXTENT_SIZE
from framework.xen.public.arch_powerpc import GUEST_MEMORY_LIMIT
from framework.xen.public.arch_powerpc import XEN_RESERVED_BYTES as XEN_RESERVED
from framework.xen.public.io.blkif import (
    BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_RING_SIZE,
    BLKIF_SECTOR_SIZE,
)
from framework.xen.public.io.xs_wire import XENSTORE_PAYLOAD_MAX
from framework.xen.public.xen import MAX_VIRT_CPUS as MAX_VCPUS

__all__ = [
    "BLKIF_MAX_SEGMENTS_PER_REQUEST",
    "BLKIF_RING_SLOTS",
    "DOM0_NAMES",
    "EXTENT_SIZE",
    "GUEST_MEMORY_LIMIT",
    "IO_HOLE_END",
    "IO_HOLE_START",
    "MAX_BLOCK_SIZE",
    "MAX_CLOCK",
    "MAX_COUNT",
    "MAX_CPUS",
    "MAX_DURATION",
    "MAX_HOST_MEMORY",
    "MAX_IMAGE_PATH",
    "MAX_MACHINE_MEMORY",
    "MAX_MESSAGE_SIZE",
    "MAX_NAME",
    "MAX_TIMER_HZ",
    "MAX_VBD_SIZE",
    "MAX_VCPUS",
    "MIN_VBD_SIZE",
    "PAGE_SIZE",
    "RMA_SIZES",
    "SECTOR_SIZE",
    "XEN_RESERVED",
    "GiB",
    "KiB",
    "MiB",
    "is_dom0_name",
    "memory_ranges",
]

KiB: Final = 1 << 10
MiB: Final = 1 << 20
GiB: Final = 1 << 30

# EXTENT_SIZE (memory beyond the RMA comes in 16 MiB extents), XEN_RESERVED (Xen keeps the
# bottom 64 MiB of machine memory) and MAX_VCPUS (MAX_VIRT_CPUS) are the guest ABI's, in
# framework.xen.public; PAGE_SIZE is the 970's.
# dom0 must stay below the 2-4 GiB I/O hole (IO_HOLE_START, from the machine's memory map);
# RAM beyond 2 GiB is placed from IO_HOLE_END up (`memory_ranges`), so an RMA, which must be
# one naturally aligned block of RAM, can only be as large as one of those ranges allows.
# A domain's memory must fit below the foreign map area at guest-physical 16 GiB
# (GUEST_MEMORY_LIMIT), which bounds its RMA too.

#: Most machine memory: RAM above the hole must end inside the 970FX's 42-bit physical
#: address space.
MAX_MACHINE_MEMORY: Final = PHYS_ADDR_LIMIT - (IO_HOLE_END - IO_HOLE_START)

#: Most machine memory the simulator backs: all of it is one anonymous host mapping
#: spanning the top of RAM (the 2 GiB I/O hole included), which a host refuses long before
#: the 42-bit limit; 512 GiB is 32 times the largest real 970 box (16 GiB) and well below
#: the 47-bit user address space of a 64-bit Linux host. Whether this host has the memory
#: to commit is only known when the run maps it.
MAX_HOST_MEMORY: Final = 512 << 30

#: Longest duration (or time of an event) a scenario may give: trace timestamps are int64
#: nanoseconds.
MAX_DURATION: Final = (1 << 63) - 1

#: Most of anything a scenario counts (lines, rounds, requests, messages): the toolstack
#: hands counts to the guest as devtree u64s and the trace records them as int64.
MAX_COUNT: Final = (1 << 63) - 1

#: Fastest core clock: the devtree's `clock-frequency` (and `timebase-frequency`) is one
#: 32-bit cell, as Linux/PPC reads it.
MAX_CLOCK: Final = (1 << 32) - 1

#: Fastest timer workload: its period is 1/hz in whole nanoseconds, which must not be 0.
MAX_TIMER_HZ: Final = 1_000_000_000

#: Longest domain name: it names files in the run directory (`console/<name>.log`,
#: `disks/<name>-<vbd>.img`, at most 255 bytes each on Linux) and xenstore nodes.
MAX_NAME: Final = 64

DOM0_NAMES: Final = ("dom0", "Domain-0")

# Block I/O facts (public/io/blkif.h): 512-byte sectors, at most 11 segments of one 4 KiB
# page per request, and 32 request slots in a one-page ring.
SECTOR_SIZE: Final = BLKIF_SECTOR_SIZE
MAX_BLOCK_SIZE: Final = BLKIF_MAX_SEGMENTS_PER_REQUEST * PAGE_SIZE
BLKIF_RING_SLOTS: Final = BLKIF_RING_SIZE
MIN_VBD_SIZE: Final = 1 * MiB
MAX_MESSAGE_SIZE: Final = 16 * MiB

#: Largest vbd: 2TiB is 2^32 sectors, and the largest file every Linux file system a run
#: directory sits on holds (ext3 with 4KiB blocks; ext4 stops at 16TiB - 4KiB, vfat far
#: lower). A created image is sparse, so only what guests write takes disk space.
MAX_VBD_SIZE: Final = 2 << 40

#: Longest image path (UTF-8 bytes): the toolstack writes it to the vbd's `params` node in
#: one xenstore message of at most XENSTORE_PAYLOAD_MAX bytes, with the node's own path.
MAX_IMAGE_PATH: Final = XENSTORE_PAYLOAD_MAX - 128


def is_dom0_name(name: str) -> bool:
    """True for the names a scenario may use for dom0 ('dom0' or 'Domain-0')."""
    return name in DOM0_NAMES
