"""`xenbus.h`: the states a front or back end publishes in xenstore."""

from __future__ import annotations

from enum import IntEnum


class XenbusState(IntEnum):
    """The state a front or back end publishes in xenstore as it connects and closes."""

    Unknown = 0
    Initialising = 1
    InitWait = 2
    Initialised = 3
    Connected = 4
    Closing = 5
    Closed = 6
