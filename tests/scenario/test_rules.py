"""Cross-field rules of a whole scenario: what they accept at their edges, and a clear refusal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framework.errors import ScenarioError
from framework.scenario import NetstreamWorkload, load_scenario, parse_scenario

DATA = Path(__file__).resolve().parents[1] / "data"
MiB = 1 << 20


def test_pingpong_with_dom0_is_refused_with_a_clear_line() -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(DATA / "dom0_pingpong.yaml")
    assert "dom0.workloads[0].peer: pingpong with dom0 is not modelled yet" in str(err.value)


def test_memory_counts_each_domains_page_table_and_grant_frames() -> None:
    # Xen 64 MiB + dom0 256 MiB (+ 4 MiB page table + 16 KiB grant frames) leave 188 MiB
    # less 16 KiB of a 512 MiB machine: a 176 MiB guest (+ 4 MiB + 16 KiB) fits; a
    # 192 MiB one would fill the machine with memory alone, but its 4 MiB page table and
    # grant frames do not fit (Xen would fail to build it).
    text = (
        "name: full\nduration: 1s\nmachine: {memory: 512MiB}\n"
        "dom0: {memory: 256MiB}\ndomains:\n  - {name: g, memory: 176MiB}\n"
    )
    assert parse_scenario(text).domains[0].memory == 176 * MiB
    with pytest.raises(ScenarioError, match=r"domains\[0\]\.memory: does not fit: .* = 532512KiB"):
        parse_scenario(text.replace("176MiB", "192MiB"))


def test_two_guests_may_stream_to_each_other_on_a_shared_second_bridge() -> None:
    text = """
name: both
duration: 1s
domains:
  - name: a
    memory: 64MiB
    devices: [{kind: vif, bridge: xenbr0}, {kind: vif, bridge: storage}]
    workloads: [{kind: netstream, peer: b}]
  - name: b
    memory: 64MiB
    devices: [{kind: vif, bridge: storage}]
    workloads: [{kind: netstream, peer: a, message_size: 1}]
"""
    s = parse_scenario(text)
    assert [v.bridge for v in s.domains[0].vifs] == ["xenbr0", "storage"]
    assert s.domains[1].workloads[0] == NetstreamWorkload(peer="a", message_size=1)


def test_timeline_action_exactly_at_domain_start_is_accepted() -> None:
    text = (
        "name: t\nduration: 1s\ndomains:\n  - {name: g, memory: 64MiB, start: 5ms}\n"
        "timeline:\n  - {action: console_input, at: 5ms, domain: g, text: x}\n"
        "  - {action: console_input, at: 999999999ns, domain: g, text: y}\n"
    )
    assert [a.at for a in parse_scenario(text).timeline] == [5_000_000, 999_999_999]


@pytest.mark.parametrize(
    ("action", "said"),
    [
        ("{action: pause, at: 5ms, domain: dom0}", "timeline[0].domain: dom0 cannot be paused"),
        ("{action: unpause, at: 5ms, domain: h}", "timeline[0].domain: unknown domain 'h'"),
        ("{action: pause, at: 2s, domain: g}", "timeline[0].at: at 2s is not before the end"),
    ],
)
def test_pause_and_unpause_are_refused_where_they_cannot_apply(action: str, said: str) -> None:
    text = f"name: p\nduration: 1s\ndomains: [{{name: g, memory: 64MiB}}]\ntimeline: [{action}]\n"
    with pytest.raises(ScenarioError, match=re.escape(said)):
        parse_scenario(text)


def test_pause_then_unpause_validates_in_time_order() -> None:
    text = (
        "name: p\nduration: 1s\ndomains: [{name: g, memory: 64MiB}]\ntimeline:\n"
        "  - {action: unpause, at: 30ms, domain: g}\n  - {action: pause, at: 10ms, domain: g}\n"
    )
    assert [a.action for a in parse_scenario(text).timeline] == ["pause", "unpause"]


@pytest.mark.parametrize(
    ("action", "said"),
    [
        (
            "{action: vcpu_pin, at: 5ms, domain: g, vcpu: 1, cpus: [0]}",
            "timeline[0].vcpu: domain 'g' has 1 VCPU(s); vcpu 1 is not one",
        ),
        (
            "{action: vcpu_pin, at: 5ms, domain: g, vcpu: 0, cpus: [2]}",
            "timeline[0].cpus[0]: cpu 2 is not one of the machine's 2 CPUs",
        ),
        (
            "{action: sched_credit, at: 5ms, domain: g, weight: 0}",
            "timeline[0].weight: weight must be 1..65535, got 0",
        ),
        (
            "{action: sched_credit, at: 5ms, domain: dom0, cap: 50}",
            "timeline[0].domain: dom0 cannot be rescheduled from the timeline",
        ),
    ],
)
def test_vcpu_pin_and_sched_credit_are_refused_where_they_cannot_apply(
    action: str, said: str
) -> None:
    text = (
        "name: p\nduration: 1s\nmachine: {cpus: 2}\n"
        f"domains: [{{name: g, memory: 64MiB}}]\ntimeline: [{action}]\n"
    )
    with pytest.raises(ScenarioError, match=re.escape(said)):
        parse_scenario(text)


# -- xm create / shutdown / reboot -----------------------------------------------------------
_LIFE = "name: l\nduration: 1s\ndomains:\n{domains}timeline:\n{timeline}"
_G = "  - {name: g, memory: 64MiB}\n"
_LATE = "  - {name: g, memory: 64MiB, start: timeline}\n"
_PAIR = (
    "  - {name: a, memory: 64MiB, workloads: [{kind: pingpong, peer: b, role: ping}]}\n"
    "  - {name: b, memory: 64MiB, workloads: [{kind: pingpong, peer: a, role: pong}]}\n"
)


@pytest.mark.parametrize(
    ("domains", "timeline", "said"),
    [
        (_G, "  - {action: shutdown, at: 5ms, domain: dom0}\n",
         "timeline[0].domain: dom0 cannot be shut down from the timeline; it runs the toolstack"),
        (_G, "  - {action: reboot, at: 5ms, domain: Domain-0}\n",
         "timeline[0].domain: dom0 cannot be rebooted from the timeline"),
        (_G, "  - {action: create, at: 5ms, domain: dom0}\n",
         "timeline[0].domain: dom0 cannot be created from the timeline"),
        (_G, "  - {action: reboot, at: 5ms, domain: h}\n",
         "timeline[0].domain: unknown domain 'h'; expected a guest domain's name (g)"),
        (_G, "  - {action: shutdown, at: 5ms, domain: g, reason: suspend}\n",
         "timeline[0].reason"),
        (_G, "  - {action: create, at: 5ms, domain: g}\n",
         ("timeline[0].domain: domain 'g' already exists at 5ms (it starts at 0ns); `create` "
         "builds a domain with `start: timeline` or one destroyed before")),
        (_G, "  - {action: shutdown, at: 5ms, domain: g}\n  - {action: reboot, at: 6ms, domain: g}\n",
         "timeline[1].at: at 6ms domain 'g' is already gone (timeline[0] at 5ms)"),
        (_G, "  - {action: destroy, at: 5ms, domain: g}\n  - {action: shutdown, at: 6ms, domain: g}\n",
         "timeline[1].at: at 6ms domain 'g' is already destroyed (timeline[0] at 5ms)"),
        (_LATE, "  - {action: pause, at: 5ms, domain: g}\n",
         ("timeline[0].at: at 5ms domain 'g' does not exist yet (`start: timeline` and no "
         "`create` before)")),
        (_LATE, "  - {action: create, at: 5ms, domain: g}\n  - {action: create, at: 6ms, domain: g}\n",
         "timeline[1].domain: domain 'g' already exists at 6ms (created earlier in the timeline)"),
        (_LATE, "  []\n", ("domains[0].start: domain 'g' has `start: timeline` but no timeline "
         "`create` action builds it: it would never exist")),
        (_PAIR, "  - {action: reboot, at: 5ms, domain: a}\n",
         ("timeline[0].domain: domain 'a' is in a pingpong pair with 'b', built together; it "
         "cannot be rebooted from the timeline alone")),
        (_PAIR, "  - {action: destroy, at: 5ms, domain: b}\n  - {action: create, at: 6ms, domain: b}\n",
         "timeline[1].domain: domain 'b' is in a pingpong pair with 'a'"),
        ("  - {name: g, memory: 64MiB, start: soon}\n", "  []\n",
         "domains[0].start: "),
    ],
)  # fmt: skip
def test_lifecycle_actions_are_refused_where_they_cannot_apply(
    domains: str, timeline: str, said: str
) -> None:
    text = _LIFE.format(domains=domains, timeline=timeline).replace(":\n  []\n", ": []\n")
    with pytest.raises(ScenarioError, match=re.escape(said)):
        parse_scenario(text)


@pytest.mark.parametrize(
    ("domains", "timeline"),
    [
        (_LATE, "  - {action: create, at: 5ms, domain: g}\n  - {action: reboot, at: 6ms, domain: g}\n"),
        (_G, "  - {action: destroy, at: 5ms, domain: g}\n  - {action: create, at: 6ms, domain: g}\n"),
        (_G, "  - {action: shutdown, at: 5ms, domain: g}\n  - {action: create, at: 9ms, domain: g}\n"),
        (_G, "  - {action: reboot, at: 5ms, domain: g}\n  - {action: shutdown, at: 9ms, domain: g}\n"),
        ("  - {name: g, memory: 64MiB, on_poweroff: restart}\n",
         "  - {action: shutdown, at: 5ms, domain: g}\n  - {action: pause, at: 9ms, domain: g}\n"),
    ],
)  # fmt: skip
def test_lifecycle_actions_follow_the_domains_life(domains: str, timeline: str) -> None:
    parse_scenario(_LIFE.format(domains=domains, timeline=timeline))


def test_start_timeline_and_the_exit_actions_have_xms_defaults() -> None:
    g = parse_scenario(_LIFE.format(domains=_G, timeline="  []\n").replace(":\n  []\n", ": []\n"))
    d = g.domains[0]
    assert (d.start, d.on_poweroff, d.on_reboot, d.on_crash) == (
        0,
        "destroy",
        "restart",
        "preserve",
    )
    late = parse_scenario(
        _LIFE.format(domains=_LATE, timeline="  - {action: create, at: 5ms, domain: g}\n")
    )
    assert late.domains[0].start == "timeline"
