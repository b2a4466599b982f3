"""Domain and VCPU state codes: the hypervisor's plain ints are the trace's names."""

from __future__ import annotations

from framework.trace import Runstate as TraceRunstate
from framework.xen.domain import DomainState, Runstate


def _codes(cls: type) -> dict[str, int]:
    return {name: value for name, value in vars(cls).items() if name.isupper()}


def test_runstate_codes_are_the_traces() -> None:
    assert _codes(Runstate) == {s.name: int(s) for s in TraceRunstate}
    assert all(type(v) is int for v in _codes(Runstate).values())


def test_domain_states_are_distinct_ints() -> None:
    codes = _codes(DomainState)
    assert list(codes) == ["CREATED", "RUNNING", "PAUSED", "SHUTDOWN", "DYING"]
    assert sorted(codes.values()) == list(range(5))
