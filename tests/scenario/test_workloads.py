"""Workload models: the bounds they document are inclusive."""

from __future__ import annotations

from framework.scenario import BlockioWorkload, parse_scenario
from tests.scenario.texts import vbd_scenario

KiB = 1 << 10


def test_block_size_bounds_are_inclusive() -> None:
    for size, expected in (("512", 512), ("44KiB", 44 * KiB)):
        text = vbd_scenario("size: 1MiB") + (
            f"    workloads:\n      - {{kind: blockio, device: xvda, block_size: {size}, "
            "region: 1MiB, read_percent: 0}\n"
        )
        w = parse_scenario(text).domains[0].workloads[0]
        assert isinstance(w, BlockioWorkload) and w.block_size == expected
