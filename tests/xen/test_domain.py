"""Domain state codes: plain ints, distinct, in lifecycle order."""

from __future__ import annotations

from framework.xen.domain import DomainState


def _codes(cls: type) -> dict[str, int]:
    return {name: value for name, value in vars(cls).items() if name.isupper()}


def test_domain_states_are_distinct_ints() -> None:
    codes = _codes(DomainState)
    assert list(codes) == ["CREATED", "RUNNING", "PAUSED", "SHUTDOWN", "DYING"]
    assert sorted(codes.values()) == list(range(5))
