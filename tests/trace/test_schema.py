"""The trace schema: one definition of every kind, with fields and columns derived."""

from __future__ import annotations

import pytest

from framework.trace.schema import (
    BASE_COLUMNS,
    FIELD_COLUMNS,
    FIELD_DOCS,
    FIELD_ENUMS,
    KIND_BY_NAME,
    KINDS,
    MAX_FIELDS,
    Kind,
    kind_ident,
)


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
    assert len(KINDS) == 68


def test_names_unique_fields_bounded_and_documented() -> None:
    names = [k.name for k in KINDS]
    assert len(set(names)) == len(names)
    for kind in KINDS:
        assert len(kind.fields) <= MAX_FIELDS
        assert kind.doc
    assert set(FIELD_COLUMNS) == set(FIELD_DOCS)
    assert not set(FIELD_COLUMNS) & (set(BASE_COLUMNS) | {"text"})
    assert FIELD_COLUMNS[:3] == ("prev_dom", "prev_vcpu", "boost")


def test_enumerated_fields_are_runstates_of_sched_runstate() -> None:
    assert FIELD_ENUMS == {"state": "runstate", "prev_state": "runstate"}
    assert set(FIELD_ENUMS) <= set(FIELD_COLUMNS)


def test_a_kind_with_too_many_or_repeated_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 4 fields"):
        Kind("x.y", "doc", ("a", "b", "c", "d", "e"))
    with pytest.raises(ValueError, match="repeated field"):
        Kind("x.y", "doc", ("a", "a"))


def test_kind_ident() -> None:
    assert kind_ident("hcall.continuation") == "HCALL_CONTINUATION"
