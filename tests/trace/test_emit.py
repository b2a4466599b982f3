"""The C emitter appends exactly the documented 10-tuple, refuses malformed calls, and
keeps atomic records out of the cyclic GC."""

from __future__ import annotations

import gc
import weakref

import pytest

from framework.trace._emit import Emitter


def test_pads_fields_with_zero_and_text_with_none() -> None:
    records: list[tuple[object, ...]] = []
    emit = Emitter(records)
    emit(3, 100, 1, 2, 0)
    emit(3, 101, 1, 2, 0, 7, 8, text="hello")
    emit(3, 102, 1, 2, 0, 7, 8, 9, 10, "positional")
    assert emit.records is records
    assert records == [
        (3, 100, 1, 2, 0, 0, 0, 0, 0, None),
        (3, 101, 1, 2, 0, 7, 8, 0, 0, "hello"),
        (3, 102, 1, 2, 0, 7, 8, 9, 10, "positional"),
    ]


def test_big_register_images_are_kept_whole() -> None:
    records: list[tuple[object, ...]] = []
    Emitter(records)(1, 0, 0, 0, 0, (1 << 64) - 1)
    assert records[0][5] == (1 << 64) - 1


class _Holder:
    records: list[tuple[object, ...]]


def test_atomic_records_are_untracked_and_others_stay_tracked() -> None:
    records: list[tuple[object, ...]] = []
    emit = Emitter(records)
    emit(3, 100, 1, 2, 0, 7, text="label")
    emit(3, 100, 1, 2, 0, 7, 8, 9, 1.5, b"raw")
    holder = _Holder()
    emit(3, 100, 1, 2, 0, text=holder)  # type: ignore[arg-type]
    assert not gc.is_tracked(records[0])
    assert not gc.is_tracked(records[1])
    # A record holding a container could be in a cycle: the GC must still see it.
    assert gc.is_tracked(records[2])
    holder.records = records  # records -> record -> holder -> records
    alive = weakref.ref(holder)
    del holder, records, emit
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, 2), {}, "2 positional arguments given"),
        ((1, 2, 3, 4, 5, 6, 7, 8, 9, "t", "extra"), {}, "11 positional arguments given"),
        ((1, 2, 3, 4, 5), {"txt": "a"}, "unexpected keyword argument 'txt'"),
        ((1, 2, 3, 4, 5, 6, 7, 8, 9, "t"), {"text": "again"}, "unexpected keyword"),
    ],
)
def test_malformed_calls_raise_type_error(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    records: list[tuple[object, ...]] = []
    with pytest.raises(TypeError, match=message):
        Emitter(records)(*args, **kwargs)  # type: ignore[arg-type]
    assert records == []


def test_records_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="must be list"):
        Emitter(())  # type: ignore[arg-type]
