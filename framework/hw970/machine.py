"""A 970 board: 1-4 cores sharing one machine memory, an MPIC, and its own devtree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from framework.hw970.core import Core
from framework.hw970.devtree import MachineDevtreeSpec, build_machine_devtree
from framework.hw970.engines import CoreBus
from framework.hw970.memory import MachineMemory
from framework.hw970.mpic import Mpic
from framework.hw970.params import CLOCK_HZ, CPUS, MAX_CPUS, MEMORY_BYTES, TIMEBASE_HZ


@dataclass(frozen=True)
class MachineConfig:
    """The board's shape; the defaults are the documented machine defaults (params.py)."""

    ncpus: int = CPUS
    memory_bytes: int = MEMORY_BYTES
    clock_hz: int = CLOCK_HZ
    timebase_hz: int = TIMEBASE_HZ


class Machine:
    """The hardware: cores, memory, interrupt controller, firmware devtree."""

    def __init__(self, config: MachineConfig) -> None:
        if not 1 <= config.ncpus <= MAX_CPUS:
            raise ValueError(f"a 970 box here has 1..{MAX_CPUS} CPUs, not {config.ncpus}")
        self.config = config
        self.memory_bytes = config.memory_bytes
        self.memory = MachineMemory(config.memory_bytes)
        self.mpic = Mpic(config.ncpus)
        self.devtree = build_machine_devtree(
            MachineDevtreeSpec(
                ncpus=config.ncpus,
                memory_bytes=config.memory_bytes,
                clock_hz=config.clock_hz,
                timebase_hz=config.timebase_hz,
            )
        )
        #: Native routines by guest code address, shared by every core (sensitive
        #: instructions need no registration: cores find them as they run, code_pages.py).
        self.natives: dict[int, Callable[[Core], None]] = {}
        #: The broadcasts (tlbie, code writes) that reach every core's contexts, the
        #: code pages they may execute, and the Unicorn engines opened ahead for new
        #: contexts.
        self.bus = CoreBus(self.memory)
        self.cores = [
            Core(
                c,
                self.memory,
                config.clock_hz,
                config.timebase_hz,
                self.natives,
                self.bus,
            )
            for c in range(config.ncpus)
        ]

    def close(self) -> None:
        """Stop opening Unicorn engines ahead (the cores keep working)."""
        self.bus.close()

    def bind_native(self, address: int, routine: Callable[[Core], None]) -> None:
        """Run `routine` whenever a core reaches guest code at `address`."""
        self.natives[address] = routine
        for core in self.cores:
            core.hook_sites()
