"""Machine defaults: the hardware models default to the values params.py declares."""

from __future__ import annotations

from framework.hw970 import params
from framework.hw970.disk import DiskParams
from framework.hw970.link import LinkParams
from framework.hw970.machine import MachineConfig


def test_machine_config_defaults_to_the_declared_board() -> None:
    config = MachineConfig()
    assert (config.ncpus, config.memory_bytes, config.clock_hz, config.timebase_hz) == (
        2,
        2 << 30,
        1_800_000_000,
        33_333_333,
    )
    assert 1 <= params.CPUS <= params.MAX_CPUS == 4


def test_disk_and_link_default_to_the_declared_models() -> None:
    disk = DiskParams()
    assert (disk.latency_ns, disk.bandwidth_bps, disk.queue_depth) == (100_000, 100_000_000, 32)
    link = LinkParams()
    # params.py counts bytes/s, as the scenario does; the link model counts bits/s.
    assert (link.bandwidth_bps, link.latency_ns, link.mtu) == (1_000_000_000, 20_000, 1500)
    assert params.LINK_BANDWIDTH_BYTES_PER_S * 8 == link.bandwidth_bps


def test_timebase_is_slower_than_the_core_clock() -> None:
    assert 0 < params.TIMEBASE_HZ < params.CLOCK_HZ
