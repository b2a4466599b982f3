"""The C emit appends exactly the documented 10-tuple, and refuses malformed calls."""

from __future__ import annotations

import pytest
from framework.trace._emit import emit_into


def test_pads_fields_with_zero_and_text_with_none() -> None:
    records: list[tuple[object, ...]] = []
    emit_into(records, 3, 100, 1, 2, 0)
    emit_into(records, 3, 101, 1, 2, 0, 7, 8, text="hello")
    emit_into(records, 3, 102, 1, 2, 0, 7, 8, 9, 10, "positional")
    assert records == [
        (3, 100, 1, 2, 0, 0, 0, 0, 0, None),
        (3, 101, 1, 2, 0, 7, 8, 0, 0, "hello"),
        (3, 102, 1, 2, 0, 7, 8, 9, 10, "positional"),
    ]


def test_big_register_images_are_kept_whole() -> None:
    records: list[tuple[object, ...]] = []
    emit_into(records, 1, 0, 0, 0, 0, (1 << 64) - 1)
    assert records[0][5] == (1 << 64) - 1


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
        emit_into(records, *args, **kwargs)
    assert records == []


def test_records_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="records must be a list"):
        emit_into((), 1, 2, 3, 4, 5)
