"""The exceptions xen970 raises on purpose, so callers can tell them from bugs."""

from __future__ import annotations


class Xen970Error(Exception):
    """Base of every error xen970 reports to a user as one line."""


class ScenarioError(Xen970Error):
    """A scenario file is unreadable or invalid; the message names file, line and field."""


class SimulationError(Xen970Error):
    """The simulation could not go on (a model invariant broke, not a guest fault)."""


__all__ = ["ScenarioError", "SimulationError", "Xen970Error"]
