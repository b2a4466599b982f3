"""The hostile guest, as a property: whatever hypercalls and instruction words a domU or
dom0 throws at Xen, no exception escapes, nothing hangs, simulated time goes on, and no
frame it may not write changes (about 10^4 calls and 10^4 words per run of the suite).

Each example boots a fresh machine and runs its calls as one batch.  Hypothesis does not
shrink a failure (every attempt boots a machine: minutes): the failure names the call
that raised for a simulator bug, lists the batch's calls, and writes them to a file that
`python -m fuzz.hostile_guest --replay FILE` runs.  The long campaign is
`python -m fuzz.hostile_guest --calls 1000000`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz.call import Call
from fuzz.calls import generate
from fuzz.layout import ARG_SLOT, ARGS_GPA
from fuzz.session import Session

#: Calls per example (one batch) and examples per mode: ~10^4 calls in all.
CALLS = (300, 500)
EXAMPLES = 12


def _check(mode: str, seeds: list[int], tmp: Path) -> None:
    session = Session(mode)
    try:
        world = session.world()
        calls = [generate(world, s, ARGS_GPA + i * ARG_SLOT) for i, s in enumerate(seeds)]
        result = session.run(calls)
    finally:
        session.close()
    if result.findings:
        path = tmp / f"hostile-{mode}.json"
        doc = {"mode": mode, "batches": [[c.as_json() for c in calls]]}
        path.write_text(json.dumps(doc))
        listing = "\n".join(f"  {i}: {c.describe()}" for i, c in enumerate(calls))
        pytest.fail(
            "\n".join(str(f) for f in result.findings)
            + f"\ncalls:\n{listing}\nreplay: python -m fuzz.hostile_guest --replay {path}",
            pytrace=False,
        )


_SEEDS = st.lists(st.integers(0, 2**64 - 1), min_size=CALLS[0], max_size=CALLS[1])
_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_SETTINGS
@given(seeds=_SEEDS)
def test_a_hostile_domu_cannot_crash_hang_or_touch_what_is_not_its_own(
    seeds: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _check("domU", seeds, tmp_path_factory.mktemp("domU"))


@_SETTINGS
@given(seeds=_SEEDS)
def test_a_hostile_dom0_cannot_crash_hang_or_touch_what_was_not_given_it(
    seeds: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _check("dom0", seeds, tmp_path_factory.mktemp("dom0"))


def test_calls_round_trip_through_json_for_replay() -> None:
    session = Session("domU")
    try:
        world = session.world()
    finally:
        session.close()
    calls = [generate(world, s, ARGS_GPA + i * ARG_SLOT) for i, s in enumerate(range(200))]
    assert [Call.from_json(json.loads(json.dumps(c.as_json()))) for c in calls] == calls
    assert any(c.writes for c in calls) and any(c.words for c in calls)
