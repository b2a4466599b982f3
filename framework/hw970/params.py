"""Machine defaults: the one place a default of the simulated 970 box is declared.

The box a scenario gets when it says nothing: a JS20/JS21-like 2-way 970FX blade at 1.8 GHz
with 2 GiB, one disk model per vbd and one link per vif. The scenario language documents
these values to users (its reference table is generated from them), and the hardware models
(`MachineConfig`, `DiskParams`, `LinkParams`) and dom0's `Moderation` take their defaults
from here, so the simulator and the scenario cannot disagree about what "default" means.

Each value names its unit in its name (gem5's `Param.Latency('30ns', "...")` habit, as
plain `Final` integers so compiled modules read them as literals) and says what it is.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLOCK_HZ",
    "CPUS",
    "DISK_BANDWIDTH_BYTES_PER_S",
    "DISK_IRQ_COALESCE",
    "DISK_IRQ_TIMEOUT_NS",
    "DISK_LATENCY_NS",
    "DISK_QUEUE_DEPTH",
    "LINK_BANDWIDTH_BYTES_PER_S",
    "LINK_IRQ_INTERVAL_NS",
    "LINK_LATENCY_NS",
    "LINK_MTU_BYTES",
    "MAX_CPUS",
    "MEMORY_BYTES",
    "SYNC_QUANTUM_NS",
    "TIMEBASE_HZ",
]

# --- The board ---------------------------------------------------------------------------

#: Physical CPUs (count): a 2-way blade, as the JS20/JS21.
CPUS: Final = 2
#: Most physical CPUs (count): the largest 970 boxes Xen/PPC ran on (JS21, Maple) had four.
MAX_CPUS: Final = 4
#: Machine memory (bytes): 2 GiB.
MEMORY_BYTES: Final = 2 << 30
#: Core clock (Hz): 970FX of the JS20/JS21-class blades and the Maple board (1.6-2.2 GHz parts).
CLOCK_HZ: Final = 1_800_000_000
#: Timebase frequency (Hz): assumed 33.333333 MHz, as on JS20/JS21 and Maple (firmware
#: reports it in the devtree).
TIMEBASE_HZ: Final = 33_333_333

# --- The disk behind each vbd -------------------------------------------------------------

#: Per-request latency (ns): seek + rotation + controller, before data moves; 100 us.
DISK_LATENCY_NS: Final = 100_000
#: Transfer rate (bytes/s): 100 MB/s.
DISK_BANDWIDTH_BYTES_PER_S: Final = 100_000_000
#: Requests one disk serves at once (count): the controller's command queue.
DISK_QUEUE_DEPTH: Final = 32
#: Completions gathered into one interrupt while the disk is still busy (count; 1 = one
#: interrupt each), as AHCI command completion coalescing.
DISK_IRQ_COALESCE: Final = 4
#: Longest a completion waits for others to share its interrupt (ns): 500 us.
DISK_IRQ_TIMEOUT_NS: Final = 500_000

# --- The link between each vif and its bridge ---------------------------------------------

#: Transfer rate (bytes/s): 125,000,000 bytes/s is 1 Gbit/s.
LINK_BANDWIDTH_BYTES_PER_S: Final = 125_000_000
#: One-way propagation latency (ns): 20 us.
LINK_LATENCY_NS: Final = 20_000
#: Largest frame payload (bytes): Ethernet's 1500 (ETH_DATA_LEN).
LINK_MTU_BYTES: Final = 1500
#: Least time between two network interrupts (ns; 0 = one per frame): 50 us, i.e. e1000's
#: InterruptThrottleRate of 20,000 interrupts/s.
LINK_IRQ_INTERVAL_NS: Final = 50_000

# --- How the simulated CPUs keep in step --------------------------------------------------

#: Synchronisation quantum (ns): while more than one CPU is busy, no slice crosses the
#: next multiple of it, so what one CPU posts to another busy CPU (an IPI, a BOOSTed wake)
#: takes effect within this bound. Chosen from measurements: see the README's "Slices and
#: other CPUs".
SYNC_QUANTUM_NS: Final = 20_000
