"""Scenario texts several test modules build on."""

from __future__ import annotations


def vbd_scenario(vbd: str) -> str:
    """A one-guest scenario whose only device is the vbd `xvda` with the given keys."""
    return (
        "name: img\nduration: 1s\ndomains:\n  - name: g\n    memory: 64MiB\n"
        f"    devices:\n      - {{kind: vbd, name: xvda, {vbd}}}\n"
    )
