"""`grants:` and the grant timeline actions: accepted where they apply, refused with one
line naming the field where they cannot."""

from __future__ import annotations

import re

import pytest

from framework.errors import ScenarioError
from framework.scenario import GrantMapAction, SharedmemWorkload, parse_scenario

_BASE = """
name: g
duration: 50ms
domains:
  - {name: alpha, memory: 64MiB, workloads: [{kind: sharedmem, grant: a, every: 2ms}]}
  - {name: beta, memory: 64MiB, start: 5ms}
grants:
  - {name: a, granter: alpha, peer: dom0, pages: 2}
  - {name: b, granter: alpha, peer: beta, access: ro}
"""


def _with(grants: str = "", timeline: str = "") -> str:
    text = _BASE
    if grants:
        text = text.replace("  - {name: b, granter: alpha, peer: beta, access: ro}", grants)
    if timeline:
        text += f"timeline:\n{timeline}\n"
    return text


def test_a_grant_section_with_its_workload_and_actions_is_accepted() -> None:
    s = parse_scenario(
        _with(
            timeline="  - {action: grant_map, at: 10ms, grant: a}\n"
            "  - {action: grant_revoke, at: 11ms, grant: a}\n"
            "  - {action: grant_unmap, at: 12ms, grant: a}\n"
            "  - {action: grant_map, at: 13ms, grant: b, domain: dom0, write: true}\n"
        )
    )
    assert [g.name for g in s.grants] == ["a", "b"]
    assert s.grants[1].access == "ro" and s.grants[0].pages == 2
    w = s.domains[0].workloads[0]
    assert isinstance(w, SharedmemWorkload) and w.every == 2_000_000
    maps = [a for a in s.timeline if isinstance(a, GrantMapAction)]
    assert maps[1].domain == "dom0" and maps[1].write


@pytest.mark.parametrize(
    ("grants", "timeline", "said"),
    [
        (
            "  - {name: b, granter: alpha, peer: beta, access: transfer}",
            "",
            "grants[1].access: transfer grants cannot be made on the 970 port",
        ),
        (
            "  - {name: b, granter: dom0, peer: beta}",
            "",
            "grants[1].granter: dom0 does not grant here",
        ),
        (
            "  - {name: b, granter: alpha, peer: gamma}",
            "",
            "grants[1].peer: unknown domain 'gamma'",
        ),
        ("  - {name: b, granter: alpha, peer: alpha}", "", "grants[1].peer: 'alpha' cannot grant"),
        (
            "  - {name: a, granter: alpha, peer: beta}",
            "",
            "grants[1].name: duplicate grant name 'a'",
        ),
        ("  - {name: b, granter: alpha, peer: beta, pages: 65}", "", "grants[1].pages"),
        (
            "",
            "  - {action: grant_revoke, at: 10ms, grant: nope}",
            "timeline[0].grant: unknown grant 'nope'; known grants: a, b",
        ),
        (
            "",
            "  - {action: grant_map, at: 10ms, grant: b}",
            "timeline[0].domain: 'beta' cannot map grants: only dom0 has a foreign map area",
        ),
        (
            "",
            "  - {action: grant_map, at: 10ms, grant: a, domain: beta}",
            "timeline[0].domain: 'beta' cannot map grants",
        ),
        (
            "",
            "  - {action: grant_unmap, at: 10ms, grant: a}",
            "timeline[0]: grant 'a' is not mapped by dom0 (no grant_map before)",
        ),
        (
            "",
            "  - {action: grant_map, at: 1ms, grant: b, domain: dom0}",
            "timeline[0].at: at 1ms is before domain 'beta' starts (5ms)",
        ),
        (
            "",
            "  - {action: grant_revoke, at: 50ms, grant: a}",
            "timeline[0].at: at 50ms is not before the end of the run",
        ),
    ],
)
def test_grants_and_grant_actions_are_refused_where_they_cannot_apply(
    grants: str, timeline: str, said: str
) -> None:
    with pytest.raises(ScenarioError, match=re.escape(said)):
        parse_scenario(_with(grants, timeline))


def test_a_sharedmem_workload_runs_in_the_granter_of_a_known_grant() -> None:
    wrong = _BASE.replace(
        "{name: beta, memory: 64MiB, start: 5ms}",
        "{name: beta, memory: 64MiB, workloads: [{kind: sharedmem, grant: a}]}",
    )
    with pytest.raises(
        ScenarioError, match=re.escape("grant 'a' is granted by 'alpha', not 'beta'")
    ):
        parse_scenario(wrong)
    with pytest.raises(ScenarioError, match=re.escape("workloads[0].grant: unknown grant 'zz'")):
        parse_scenario(_BASE.replace("grant: a, every", "grant: zz, every"))
