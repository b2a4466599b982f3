"""docs/trace-schema.md is generated from the schema and must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from framework.trace.doc import render_markdown
from framework.trace.schema import KINDS

REPO = Path(__file__).resolve().parents[2]


def test_committed_document_matches_the_schema() -> None:
    committed = (REPO / "docs" / "trace-schema.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), (
        "regenerate with: python -m framework.trace.doc > docs/trace-schema.md"
    )


def test_document_lists_every_kind_with_its_id() -> None:
    text = render_markdown()
    for number, kind in enumerate(KINDS):
        assert f"| {number} | `{kind.name}` |" in text


def test_module_prints_the_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framework.trace.doc"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == render_markdown()
