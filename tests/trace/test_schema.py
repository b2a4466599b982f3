"""The trace schema: one definition of every kind, with ids, fields and columns derived."""

from __future__ import annotations

import pytest

from framework.trace import schema
from framework.trace.schema import (
    BASE_COLUMNS,
    FIELD_COLUMNS,
    FIELD_DOCS,
    KIND_BY_NAME,
    KINDS,
    MAX_FIELDS,
    K,
    Runstate,
    kind_ident,
)


def test_kind_ids_follow_schema_order() -> None:
    assert K.SCHED_SWITCH == 0
    assert K.SCHED_RUNSTATE == 3
    for number, kind in enumerate(KINDS):
        assert getattr(K, kind_ident(kind.name)) == number


def test_a_kind_id_out_of_step_with_kinds_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "SCHED_WAKE", K.SCHED_SWITCH)
    with pytest.raises(RuntimeError, match="out of step with KINDS at .*SCHED_WAKE"):
        schema._check_ids()
    monkeypatch.setattr(K, "SCHED_WAKE", 1)
    monkeypatch.setattr(K, "NOT_A_KIND", 99, raising=False)
    with pytest.raises(RuntimeError, match="NOT_A_KIND"):
        schema._check_ids()


def test_kinds_named_in_the_brief_exist_with_their_fields() -> None:
    expected = {
        "sched.switch": ("prev_dom", "prev_vcpu"),
        "sched.runstate": ("state", "prev_state"),
        "hcall.enter": ("nr", "arg0", "arg1", "arg2"),
        "exc.deliver": ("vector", "srr0", "srr1", "dar"),
        "evtchn.send": ("port", "remote_dom", "remote_port"),
        "evtchn.upcall": ("pending_sel",),
        "dom.create": ("memory", "vcpus", "rma_base", "rma_size"),
        "console.out": (),
        "guest.mark": ("value",),
    }
    for name, fields in expected.items():
        assert KIND_BY_NAME[name].fields == fields
    assert KIND_BY_NAME["hcall.enter"].text == "hypercall name"
    assert KIND_BY_NAME["sched.block"].text is None
    assert len(KINDS) == 53


def test_names_unique_fields_bounded_and_documented() -> None:
    names = [k.name for k in KINDS]
    assert len(set(names)) == len(names)
    for kind in KINDS:
        assert len(kind.fields) <= MAX_FIELDS
        assert kind.doc
    assert set(FIELD_COLUMNS) == set(FIELD_DOCS)
    assert not set(FIELD_COLUMNS) & set(BASE_COLUMNS)
    assert FIELD_COLUMNS[:3] == ("prev_dom", "prev_vcpu", "boost")


def test_runstate_codes_are_xens() -> None:
    assert [int(s) for s in Runstate] == [0, 1, 2, 3]
    assert Runstate.BLOCKED.name == "BLOCKED"


def test_kind_ident() -> None:
    assert kind_ident("hcall.continuation") == "HCALL_CONTINUATION"
