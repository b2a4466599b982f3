"""The hotplug actions' rules: devices attached and detached in time order, vifs numbered
as xend numbers them, vcpu_set within 1..the domain's VCPUs."""

from __future__ import annotations

import re
from pathlib import Path

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


IMAGES = """
name: images
duration: 100ms
domains:
  - {{name: a, memory: 64MiB, devices: [{{kind: vbd, name: xvda, image: disk.img, mode: {a}}}]}}
  - {{name: b, memory: 64MiB}}
timeline:
  - {{action: block_detach, at: 5ms, domain: a, device: xvda}}
  - {{action: block_attach, at: 6ms, domain: a, device: {{name: xvda, image: disk.img, mode: w}}}}
  - {{action: block_attach, at: 7ms, domain: b, device: {{name: xvdb, image: disk.img, mode: {b}}}}}
"""


def test_an_attached_image_is_shared_only_read_only(tmp_path: Path) -> None:
    """Attaching a domain's own image again is fine; another vbd on the same file is
    refused when either writes it (here a's re-attach is writable)."""
    (tmp_path / "disk.img").write_bytes(b"\0" * (1 << 20))
    ok = IMAGES.format(a="w", b="r").split("  - {action: block_attach, at: 7ms")[0]
    assert len(parse_scenario(ok, base_dir=tmp_path).timeline) == 2
    with pytest.raises(
        ScenarioError, match=re.escape("timeline[2].device.image: image 'disk.img'")
    ):
        parse_scenario(IMAGES.format(a="r", b="r"), base_dir=tmp_path)
