"""The hotplug actions' rules: devices attached and detached in time order, vifs numbered
as xend numbers them, vcpu_set within 1..the domain's VCPUs."""

from __future__ import annotations

import re

import pytest

from framework.errors import ScenarioError
from framework.scenario import BlockAttachAction, parse_scenario

HEAD = (
    "name: h\nduration: 100ms\n"
    "domains: [{name: g, memory: 64MiB, vcpus: 2, "
    "devices: [{kind: vbd, name: xvda, size: 1MiB}, {kind: vif}]}]\n"
)


def _timeline(*actions: str) -> str:
    return HEAD + "timeline:\n" + "".join(f"  - {a}\n" for a in actions)


def test_a_disk_may_be_detached_and_attached_again_and_vifs_get_new_numbers() -> None:
    s = parse_scenario(
        _timeline(
            "{action: block_detach, at: 10ms, domain: g, device: xvda}",
            "{action: block_attach, at: 20ms, domain: g, device: {name: xvda, size: 1MiB}}",
            "{action: network_detach, at: 10ms, domain: g, devid: 0}",
            "{action: network_attach, at: 20ms, domain: g}",
            "{action: network_detach, at: 30ms, domain: g, devid: 1}",
            "{action: vcpu_set, at: 5ms, domain: g, vcpus: 1}",
        )
    )
    attach = next(a for a in s.timeline if isinstance(a, BlockAttachAction))
    assert attach.device.mode == "w" and attach.device.size == 1 << 20


@pytest.mark.parametrize(
    ("actions", "said"),
    [
        (
            ["{action: block_attach, at: 5ms, domain: g, device: {name: xvda, size: 1MiB}}"],
            "timeline[0].device.name: vbd 'xvda' is already attached to domain 'g' at 5ms",
        ),
        (
            ["{action: block_detach, at: 5ms, domain: g, device: xvdb}"],
            "timeline[0].device: vbd 'xvdb' is not attached to domain 'g' at 5ms (attached: xvda)",
        ),
        (
            # In time order, not file order: the detach at 5 ms comes first.
            [
                "{action: block_attach, at: 9ms, domain: g, device: {name: xvda, size: 1MiB}}",
                "{action: block_detach, at: 5ms, domain: g, device: xvda}",
                "{action: block_detach, at: 7ms, domain: g, device: xvda}",
            ],
            "timeline[2].device: vbd 'xvda' is not attached to domain 'g' at 7ms",
        ),
        (
            [
                "{action: network_detach, at: 5ms, domain: g, devid: 0}",
                "{action: network_attach, at: 6ms, domain: g}",
                "{action: network_detach, at: 7ms, domain: g, devid: 0}",
            ],
            "timeline[2].devid: vif 0 is not attached to domain 'g' at 7ms (attached vifs: 1)",
        ),
        (
            ["{action: vcpu_set, at: 5ms, domain: g, vcpus: 3}"],
            "timeline[0].vcpus: vcpus 3 is more than domain 'g' has (2, its `vcpus`)",
        ),
        (
            ["{action: vcpu_set, at: 5ms, domain: g, vcpus: 0}"],
            "timeline[0].vcpus: vcpus 0 would take VCPU 0 offline",
        ),
        (
            ["{action: network_attach, at: 5ms, domain: Domain-0}"],
            "timeline[0].domain: dom0 cannot be a network-attach target",
        ),
        (
            ["{action: block_detach, at: 5ms, domain: nobody, device: xvda}"],
            "timeline[0].domain: unknown domain 'nobody'",
        ),
        (
            ["{action: block_attach, at: 5ms, domain: g, device: {name: sda, size: 1MiB}}"],
            "timeline[0].device.name: vbd name 'sda' must match xvd[a-z]",
        ),
    ],
)
def test_hotplug_actions_are_refused_where_they_cannot_apply(actions: list[str], said: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(said)):
        parse_scenario(_timeline(*actions))
