"""The machine section: its defaults are the machine defaults the hardware models use too."""

from __future__ import annotations

from framework.hw970 import params
from framework.hw970.disk import DiskParams
from framework.hw970.link import LinkParams
from framework.hw970.machine import MachineConfig
from framework.iodevices import Moderation
from framework.scenario import MachineSpec


def test_defaults_are_the_declared_machine_defaults() -> None:
    m = MachineSpec()
    assert (m.cpus, m.memory, m.clock, m.timebase) == (
        params.CPUS,
        params.MEMORY_BYTES,
        params.CLOCK_HZ,
        params.TIMEBASE_HZ,
    )
    disk, link = m.disk, m.link
    assert (disk.latency, disk.bandwidth, disk.queue_depth, disk.irq_coalesce) == (
        params.DISK_LATENCY_NS,
        params.DISK_BANDWIDTH_BYTES_PER_S,
        params.DISK_QUEUE_DEPTH,
        params.DISK_IRQ_COALESCE,
    )
    assert disk.irq_timeout == params.DISK_IRQ_TIMEOUT_NS
    assert (link.bandwidth, link.latency, link.mtu, link.irq_interval) == (
        params.LINK_BANDWIDTH_BYTES_PER_S,
        params.LINK_LATENCY_NS,
        params.LINK_MTU_BYTES,
        params.LINK_IRQ_INTERVAL_NS,
    )


def test_a_scenario_that_says_nothing_gets_the_hardware_models_defaults() -> None:
    """The same conversion Simulation makes (link bandwidth: bytes/s in, bits/s out)."""
    m = MachineSpec()
    assert MachineConfig() == MachineConfig(
        ncpus=m.cpus, memory_bytes=m.memory, clock_hz=m.clock, timebase_hz=m.timebase
    )
    assert DiskParams() == DiskParams(m.disk.latency, m.disk.bandwidth, m.disk.queue_depth)
    assert LinkParams() == LinkParams(m.link.bandwidth * 8, m.link.latency, m.link.mtu)
    assert Moderation() == Moderation(m.disk.irq_coalesce, m.disk.irq_timeout, m.link.irq_interval)
