"""The fuzzing program's instruction encodings are keystone's, and the word filter keeps
the program on its straight line."""

from __future__ import annotations

import random

import pytest

from framework.hw970.asm import assemble
from framework.hw970.sensitive import TRAP_RFID, decode_sensitive
from fuzz.ppc import (
    BLR,
    SC_1,
    addi,
    addis,
    branch,
    ld,
    load_address,
    ori,
    oris,
    sldi32,
    word_allowed,
)


def _word(source: str, at: int = 0) -> int:
    return int.from_bytes(assemble(source, at)[:4], "big")


@pytest.mark.parametrize(
    ("word", "source"),
    [
        (addi(4, 0, -3), "li 4, -3"),
        (addi(31, 31, 72), "addi 31, 31, 72"),
        (addis(13, 0, 1), "lis 13, 1"),
        (addis(31, 0, -16384), "lis 31, -16384"),
        (ori(13, 13, 0x400), "ori 13, 13, 0x400"),
        (oris(31, 31, 0x5A), "oris 31, 31, 0x5a"),
        (ld(11, 64, 31), "ld 11, 64(31)"),
        (sldi32(31, 31), "sldi 31, 31, 32"),
        (SC_1, "sc 1"),
        (BLR, "blr"),
    ],
)
def test_encodings_match_keystone(word: int, source: str) -> None:
    assert word == _word(source)


def test_branches_match_keystone_and_refuse_what_they_cannot_reach() -> None:
    assert branch(0x521000, 0x520000, link=True) == _word("bl 0x520000", 0x521000)
    assert branch(0x520000, 0x521000) == _word("b 0x521000", 0x520000)
    with pytest.raises(ValueError, match="out of reach"):
        branch(0, 1 << 26)


def test_load_address_puts_a_kernel_address_in_a_register() -> None:
    words = load_address(31, 0xC0000000005A0000)
    assert words == [_word(s) for s in ("lis 31, -16384", "sldi 31, 31, 32")] + [
        _word("oris 31, 31, 0x5a"),
        _word("ori 31, 31, 0"),
    ]
    with pytest.raises(ValueError):
        load_address(31, 0x123456789)


def test_random_words_never_branch_or_touch_reserved_registers() -> None:
    rng = random.Random(14)
    kept = [w for w in (rng.getrandbits(32) for _ in range(20000)) if word_allowed(w)]
    assert 0.3 < len(kept) / 20000 < 0.9
    for w in kept:
        opcode = w >> 26
        assert opcode not in (16, 18)
        trap = decode_sensitive(w)
        assert trap is None or trap[0] != TRAP_RFID
        assert not (opcode == 19 and (w >> 1) & 0x3FF in (16, 18, 528))
        assert {(w >> 21) & 31, (w >> 16) & 31}.isdisjoint({1, 13, 31})
    assert not word_allowed(_word("fadd 2, 3, 4"))
    assert word_allowed(_word("fadd 2, 3, 4"), all_words=True)
    # Code written at run time is scanned (issue 14 item 6): sensitive words run on the
    # model, so the hostile guest executes them; rfid alone would branch anywhere.
    assert not word_allowed(_word("rfid")) and word_allowed(_word("mtmsrd 5"))
    assert any(decode_sensitive(w) is not None for w in kept)
