"""RUNSTATE_* codes of Xen's public vcpu.h: declared once, plain ints, named in code order."""

from __future__ import annotations

from pathlib import Path

from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

ROOT = Path(__file__).resolve().parents[3]


def test_runstate_codes_are_xens_plain_ints() -> None:
    codes = {name: value for name, value in vars(Runstate).items() if name.isupper()}
    assert codes == {"RUNNING": 0, "RUNNABLE": 1, "BLOCKED": 2, "OFFLINE": 3}
    assert all(type(v) is int for v in codes.values())


def test_names_follow_the_codes() -> None:
    assert RUNSTATE_NAMES == ("running", "runnable", "blocked", "offline")
    assert RUNSTATE_NAMES[Runstate.BLOCKED] == "blocked"


def test_the_codes_and_names_are_declared_nowhere_else() -> None:
    sources = [*(ROOT / "framework").rglob("*.py"), *(ROOT / "analysis").rglob("*.py")]
    homes = {
        what: [p.relative_to(ROOT).as_posix() for p in sources if what in p.read_text()]
        for what in ("class Runstate", "RUNSTATE_NAMES =", "RUNSTATE_NAMES: Final =")
    }
    assert homes == {
        "class Runstate": ["framework/xen/public/vcpu.py"],
        "RUNSTATE_NAMES =": [],
        "RUNSTATE_NAMES: Final =": ["framework/xen/public/vcpu.py"],
    }
