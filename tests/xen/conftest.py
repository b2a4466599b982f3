"""Fixtures for Xen tests (the helpers themselves are in xenharness.py)."""

from tests.xen.xenharness import booted, caller

__all__ = ["booted", "caller"]
