"""Domain models: every RMA size the 970 allows is accepted."""

from __future__ import annotations

from framework.scenario import parse_scenario


def test_every_allowed_rma_size_is_accepted() -> None:
    for rma in ("64MiB", "128MiB", "256MiB", "1GiB", "16GiB", "256GiB"):
        text = (
            f"name: r\nduration: 1s\nmachine: {{memory: 512GiB}}\n"
            f"domains:\n  - {{name: g, memory: {rma}, rma: {rma}}}\n"
        )
        assert parse_scenario(text).domains[0].rma == parse_scenario(text).domains[0].memory
