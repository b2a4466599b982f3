"""The campaign command: figures when nothing is found; a finding prints a reproduction
whose file `--replay` runs to the same finding, and the exit code says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.hw970.core import Core
from framework.xen.domain import Vcpu
from framework.xen.hcall import PAPR_CALLS
from framework.xen.hypervisor import Hypervisor
from framework.xen.public.papr import H_SET_DABR
from fuzz.hostile_guest import main


def test_a_clean_campaign_prints_its_figures_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--calls", "300", "--batch", "100", "--seed", "3", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hostile guest from domU, seed 3: 300 calls and " in out
    assert " calls/s, " in out and "found: nothing" in out
    assert not list(tmp_path.iterdir())


def test_a_finding_writes_a_reproduction_that_replays_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        raise KeyError("dabr")

    monkeypatch.setitem(PAPR_CALLS, H_SET_DABR, broken)
    argv = ["--calls", "400", "--batch", "200", "--seed", "1", "--out", str(tmp_path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "FOUND (session 0 batch 0) simulator bug: H_SET_DABR(" in out
    assert "KeyError: 'dabr'" in out and "found: " in out and "simulator bug" in out
    repro = tmp_path / "hostile-domU-seed1-session0.json"  # a fresh machine after each
    assert f"reproduce: python -m fuzz.hostile_guest --replay {repro}" in out
    assert main(["--replay", str(repro)]) == 1
    assert "FOUND (batch 0) simulator bug: H_SET_DABR(" in capsys.readouterr().out
