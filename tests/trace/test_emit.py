"""The C emitter stores exactly the documented records, refuses malformed calls, keeps each
distinct text once (alive, and visible to the cyclic GC), and hands out its columns."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from framework.trace._emit import Emitter


def test_pads_fields_with_zero_and_text_with_none() -> None:
    emit = Emitter()
    emit(3, 100, 1, 2, 0)
    emit(3, 101, 1, 2, 0, 7, 8, text="hello")
    emit(3, 102, 1, 2, 0, 7, 8, 9, 10, "positional")
    assert len(emit) == 3
    assert emit.records() == [
        (3, 100, 1, 2, 0, 0, 0, 0, 0, None),
        (3, 101, 1, 2, 0, 7, 8, 0, 0, "hello"),
        (3, 102, 1, 2, 0, 7, 8, 9, 10, "positional"),
    ]
    assert emit.records(2) == emit.records()[2:]
    assert emit.records(99) == []
    assert emit.texts() == [None, "hello", "positional"]


def test_columns_are_native_int64_in_emission_order() -> None:
    emit = Emitter()
    for i in range(10_000):  # past the first capacity: the columns grow
        emit(i % 7, 1_000_000_000_000 + i, i % 4, -1, i % 32, -i, i, 0, i * 3)
    cols = [np.frombuffer(b, dtype=np.int64) for b in emit.columns()]
    assert len(cols) == 9 and all(len(c) == 10_000 for c in cols)
    assert cols[1][-1] == 1_000_000_000_000 + 9_999 and cols[3][0] == -1
    assert cols[5][9] == -9 and cols[8][9] == 27


def test_register_images_keep_their_64_bits_and_wider_values_are_refused() -> None:
    emit = Emitter()
    emit(1, 0, 0, 0, 0, (1 << 64) - 1, -(1 << 63))
    assert emit.records()[0][5:7] == (-1, -(1 << 63))  # the bits, read as int64
    with pytest.raises(OverflowError, match="trace f0 value 18446744073709551616 does not fit"):
        emit(1, 0, 0, 0, 0, 1 << 64)
    with pytest.raises(TypeError, match="trace cpu must be an int, not str"):
        emit(1, 0, "0", 0, 0)  # type: ignore[arg-type]
    assert len(emit) == 1  # nothing half-stored


def test_texts_are_kept_alive_once_each_and_dropped_on_clear() -> None:
    label = "x" * 50
    before = sys.getrefcount(label)
    emit = Emitter()
    emit(3, 100, 1, 2, 0, text=label)
    emit(3, 101, 1, 2, 0, text=label)
    assert sys.getrefcount(label) == before + 2  # the table of texts: one dict key, one list item
    emit.clear()
    assert len(emit) == 0 and sys.getrefcount(label) == before
    assert emit.text_values() == [] and emit.text_codes() == b""
    assert gc.is_tracked(emit)


def test_text_codes_index_the_distinct_texts_in_order_of_first_appearance() -> None:
    emit = Emitter()
    for text in ("b", None, "a", "b", None, "a", "c"):
        emit(3, 0, 0, 0, 0, text=text)
    assert emit.text_values() == ["b", "a", "c"]
    assert np.frombuffer(emit.text_codes(), dtype=np.int32).tolist() == [0, -1, 1, 0, -1, 1, 2]
    assert emit.texts() == ["b", None, "a", "b", None, "a", "c"]


def test_a_text_that_is_not_a_str_is_refused() -> None:
    emit = Emitter()
    with pytest.raises(TypeError, match="trace text must be a str or None, not bytes"):
        emit(3, 100, 1, 2, 0, text=b"raw")  # type: ignore[arg-type]
    assert len(emit) == 0 and emit.text_values() == []


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
    emit = Emitter()
    with pytest.raises(TypeError, match=message):
        emit(*args, **kwargs)  # type: ignore[arg-type]
    assert len(emit) == 0


def test_the_emitter_takes_no_arguments() -> None:
    with pytest.raises(TypeError, match="takes no arguments"):
        Emitter([])  # type: ignore[call-arg]
