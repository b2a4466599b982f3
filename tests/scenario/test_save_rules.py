"""What `save` can carry (framework/scenario/save_rules.py): a pingpong side and a granter
whose peer is dom0 are carried; a netstream workload, a vif, a second VCPU or a grant
between two guests are refused in one line naming the action."""

from __future__ import annotations

import pytest

from framework.errors import ScenarioError
from framework.scenario import SaveAction, parse_scenario

PAIR = (
    "name: s\nduration: 100ms\n"
    "domains:\n"
    "  - {name: a, memory: 64MiB, workloads: [{kind: pingpong, peer: b, role: ping}]}\n"
    "  - {name: b, memory: 64MiB, workloads: [{kind: pingpong, peer: a, role: pong}]}\n"
)


@pytest.mark.parametrize("saved", ["a", "b"])
def test_either_side_of_a_pingpong_pair_may_be_saved(saved: str) -> None:
    s = parse_scenario(
        PAIR + f"timeline:\n  - {{action: save, at: 10ms, domain: {saved}, file: x.save}}\n"
    )
    assert isinstance(s.timeline[0], SaveAction)


@pytest.mark.parametrize(
    ("domain", "why"),
    [
        ("{name: g, memory: 64MiB, vcpus: 2}", "2 VCPUs"),
        ("{name: g, memory: 64MiB, devices: [{kind: vif}]}", "has a vif"),
    ],
)
def test_what_a_save_cannot_carry_is_refused_in_one_line(domain: str, why: str) -> None:
    text = (
        f"name: s\nduration: 100ms\ndomains:\n  - {domain}\n"
        "timeline:\n  - {action: save, at: 10ms, domain: g, file: x.save}\n"
    )
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text)
    assert why in str(err.value) and "timeline[0]" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("saved", ["a", "b"])
def test_a_grant_between_guests_is_not_saved_yet(saved: str) -> None:
    text = (
        "name: s\nduration: 100ms\n"
        "domains: [{name: a, memory: 64MiB}, {name: b, memory: 64MiB}]\n"
        "grants: [{name: g1, granter: a, peer: b}]\n"
        f"timeline:\n  - {{action: save, at: 10ms, domain: {saved}, file: x.save}}\n"
    )
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text)
    msg = str(err.value)
    assert "grant 'g1'" in msg and "timeline[0]" in msg and "\n" not in msg


def test_a_granter_whose_peer_is_dom0_may_be_saved() -> None:
    s = parse_scenario(
        "name: s\nduration: 100ms\n"
        "domains: [{name: a, memory: 64MiB}]\n"
        "grants: [{name: g1, granter: a, peer: dom0}]\n"
        "timeline:\n  - {action: save, at: 10ms, domain: a, file: x.save}\n"
    )
    assert isinstance(s.timeline[0], SaveAction)
