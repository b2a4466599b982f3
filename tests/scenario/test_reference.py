"""The generated scenario reference: every key with its default, and README carries it verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from framework.scenario import reference_markdown

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_scenario_reference_is_generated_from_the_schema() -> None:
    match = re.search(
        r"<!-- scenario-reference:begin[^>]*-->\n(.*?)<!-- scenario-reference:end -->",
        README,
        re.DOTALL,
    )
    assert match is not None
    assert match.group(1) == reference_markdown(), (
        "regenerate the README section with: python -m framework.scenario"
    )


def test_reference_lists_every_key_with_its_default() -> None:
    ref = reference_markdown()
    for row in (
        "| `rma` | `64MiB` | Real Mode Area: 64MiB, 128MiB, 256MiB, 1GiB, 16GiB or 256GiB |",
        "| `vcpus` | `machine.cpus` | dom0 VCPUs |",
        "| `duration` | **required** | simulated time to run |",
        "| `timebase` | `33.333333MHz` |",
    ):
        assert row in ref
    assert "workload `kind: pingpong`" in ref


def test_reference_documents_the_io_sections() -> None:
    ref = reference_markdown()
    for row in (
        "| `bandwidth` | `1Gbit/s` | transfer rate of each link |",
        "| `bandwidth` | `100MB/s` | transfer rate of each disk |",
        "| `latency` | `100us` |",
        "| `verify` | `true` |",
        "| `text` | `hello from <domain>` |",
        "| `bridge` | `xenbr0` |",
    ):
        assert row in ref
    for title in (
        "**`machine.disk`**",
        "**`machine.link`**",
        "**device `kind: vbd`**",
        "**device `kind: vif`**",
        "**workload `kind: blockio`**",
        "**workload `kind: netstream`**",
        "**workload `kind: console`**",
        "**`timeline[]` `action: console_input`**",
    ):
        assert title in ref
    assert "needs no workload" in ref


def test_python_m_framework_scenario_prints_the_reference() -> None:
    # A subprocess, as users run it (and because pytest rewrites framework's asserts: its
    # scenario plugin lives there, and the rewriting import hook cannot run a __main__).
    done = subprocess.run(
        [sys.executable, "-m", "framework.scenario"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == reference_markdown()
