"""docs/analysis.ipynb runs from start to end (nbclient, a real IPython kernel), so the
walk-through cannot rot; its plots come out as images."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "docs" / "analysis.ipynb"
#: The notebook is documentation: keep it quick.
BUDGET_S = 60


def test_analysis_notebook_executes() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    # The kernel starts in the repository's root, as the notebook says to run it.
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    began = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - began
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # gantt, cpu share, latency CDFs, runstate
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("guest2" in o["data"]["text/html"] for o in tables)
    assert elapsed < BUDGET_S, f"the notebook took {elapsed:.1f} s"
