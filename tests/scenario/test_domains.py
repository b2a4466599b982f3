"""Domain models: every RMA size the 970 allows is accepted where a machine can place it."""

from __future__ import annotations

import pytest

from framework.errors import ScenarioError
from framework.scenario import parse_scenario


def _one_guest(machine: str, rma: str) -> str:
    return (
        f"name: r\nduration: 1s\nmachine: {{memory: {machine}}}\n"
        f"domains:\n  - {{name: g, memory: {rma}, rma: {rma}}}\n"
    )


@pytest.mark.parametrize(
    ("rma", "machine"),
    # Each RMA must be one naturally aligned block of RAM above Xen's 64 MiB: 1 GiB fits
    # [1, 2) GiB, 16 GiB needs RAM up to 32 GiB, i.e. 30 GiB placed from 4 GiB up.
    [
        ("64MiB", "512MiB"),
        ("128MiB", "512MiB"),
        ("256MiB", "1GiB"),
        ("1GiB", "2GiB"),
        ("16GiB", "30GiB"),
    ],
)
def test_every_placeable_rma_size_is_accepted(rma: str, machine: str) -> None:
    scenario = parse_scenario(_one_guest(machine, rma))
    assert scenario.domains[0].rma == scenario.domains[0].memory


@pytest.mark.parametrize(
    ("rma", "machine", "why"),
    [
        ("256GiB", "512GiB", "can never be built: a domain's memory"),
        ("16GiB", "29GiB", "RMA 16GiB can never be placed"),  # RAM ends at 31 GiB
        ("1GiB", "1984MiB", "RMA 1GiB can never be placed"),  # [1, 2) GiB not all RAM
    ],
)
def test_an_rma_no_machine_layout_can_hold_is_refused(rma: str, machine: str, why: str) -> None:
    with pytest.raises(ScenarioError, match=why) as info:
        parse_scenario(_one_guest(machine, rma))
    assert "domains[0].rma" in str(info.value) and "\n" not in str(info.value)
