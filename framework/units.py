"""Parsers for the quantities scenario files carry: sizes, durations, frequencies, bandwidths.

Everything inside xen970 is an integer in a base unit (bytes, nanoseconds, hertz, bytes per
second), so these parsers are the only place where unit strings exist. They are strict: the
result must be a whole number of the base unit, and any error names the offending text. The
one documented exception is a bit rate, which is rounded down to whole bytes per second.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

from framework.errors import UnitError

__all__ = [
    "BANDWIDTH_UNITS",
    "BIT_RATE_UNITS",
    "BYTE_RATE_UNITS",
    "DURATION_UNITS",
    "FREQUENCY_UNITS",
    "SIZE_UNITS",
    "format_bandwidth",
    "format_duration",
    "format_frequency",
    "format_size",
    "parse_bandwidth",
    "parse_duration",
    "parse_fraction",
    "parse_frequency",
    "parse_size",
]


# Sizes are binary: in this field "16M" has always meant a 16 MiB page.
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "K": 1 << 10,
    "M": 1 << 20,
    "G": 1 << 30,
    "T": 1 << 40,
}

DURATION_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
}

FREQUENCY_UNITS: dict[str, int] = {
    "Hz": 1,
    "kHz": 1_000,
    "MHz": 1_000_000,
    "GHz": 1_000_000_000,
}

# Data rates in bytes per second: decimal prefixes as disk and network vendors write them,
# binary ones for those who count in pages.
BYTE_RATE_UNITS: dict[str, int] = {
    "B/s": 1,
    "kB/s": 1_000,
    "MB/s": 1_000_000,
    "GB/s": 1_000_000_000,
    "KiB/s": 1 << 10,
    "MiB/s": 1 << 20,
    "GiB/s": 1 << 30,
}

# Link rates in bits per second (decimal, as Ethernet is specified).
BIT_RATE_UNITS: dict[str, int] = {
    "bit/s": 1,
    "kbit/s": 1_000,
    "Mbit/s": 1_000_000,
    "Gbit/s": 1_000_000_000,
}

BANDWIDTH_UNITS: tuple[str, ...] = (*BYTE_RATE_UNITS, *BIT_RATE_UNITS)

#: Longest number a quantity may have: 2^64 has 20 digits; a longer one only ever ends in
#: an integer too large to say (Python refuses to print one of over 4300 digits).
_MAX_DIGITS: Final = 40
_QUANTITY: Final = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(.*?)\s*")


def _split(text: str, what: str, example: str) -> tuple[Decimal, str]:
    """Split '64MiB' into (Decimal('64'), 'MiB'), or say why it cannot be."""
    m = _QUANTITY.fullmatch(text)
    if m is None:
        raise UnitError(f"no number in {text!r}; expected a {what} like {example!r}")
    if len(m.group(1)) > _MAX_DIGITS:
        raise UnitError(
            f"the number in this {what} has {len(m.group(1))} characters; at most {_MAX_DIGITS}"
        )
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as exc:  # the regex admits only decimal literals
        raise UnitError(f"bad number in {text!r}") from exc
    return number, m.group(2)


def _scale(text: str, number: Decimal, unit: str, units: dict[str, int], base: str) -> int:
    """Multiply out, insisting on a whole, non-negative count of the base unit."""
    if unit not in units:
        raise UnitError(f"bad unit {unit!r} in {text!r}; expected one of {', '.join(units)}")
    value = number * units[unit]
    if value < 0:
        raise UnitError(f"negative quantity {text!r}")
    if value != value.to_integral_value():
        raise UnitError(f"{text!r} is not a whole number of {base}")
    return int(value)


def _reject_non_text(value: object, what: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, str):
        raise UnitError(f"expected a {what} like {example!r}, got {type(value).__name__} {value!r}")


def parse_size(value: str | int) -> int:
    """Bytes in '64MiB', '16M', '2GiB', '4096' or a plain int (bytes); units are binary."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise UnitError(f"negative size {value}")
        return value
    _reject_non_text(value, "size", "64MiB")
    assert isinstance(value, str)
    number, unit = _split(value, "size", "64MiB")
    return _scale(value, number, unit or "B", SIZE_UNITS, "bytes")


def parse_duration(value: str | int) -> int:
    """Nanoseconds in '10ms', '2s', '500us' or '100ns'; only zero may omit the unit."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value != 0:
            raise UnitError(
                f"missing unit in {value!r}; expected one of {', '.join(DURATION_UNITS)}"
            )
        return 0
    _reject_non_text(value, "duration", "10ms")
    assert isinstance(value, str)
    number, unit = _split(value, "duration", "10ms")
    if not unit:
        if number == 0:
            return 0
        raise UnitError(f"missing unit in {value!r}; expected one of {', '.join(DURATION_UNITS)}")
    return _scale(value, number, unit, DURATION_UNITS, "nanoseconds")


def parse_frequency(value: str | int) -> int:
    """Hertz in '1.8GHz', '33.333333MHz', '100Hz' or a plain int (hertz); must be > 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        hz = value
    else:
        _reject_non_text(value, "frequency", "1.8GHz")
        assert isinstance(value, str)
        number, unit = _split(value, "frequency", "1.8GHz")
        hz = _scale(value, number, unit or "Hz", FREQUENCY_UNITS, "hertz")
    if hz <= 0:
        raise UnitError(f"frequency must be positive, got {value!r}")
    return hz


def parse_bandwidth(value: str) -> int:
    """Bytes per second in '100MB/s', '1.5GB/s', '512KiB/s', '1Gbit/s' or '100Mbit/s'.

    Byte rates must be a whole number of bytes per second. Bit rates must be a whole number
    of bits per second and are then divided by 8 and rounded down, because the simulator
    moves whole bytes ('1Gbit/s' is exactly 125000000; '12bit/s' becomes 1). A unit is always
    required (a bare number could mean bits or bytes) and the result must be positive.
    """
    units = ", ".join(BANDWIDTH_UNITS)
    if isinstance(value, int) and not isinstance(value, bool):
        raise UnitError(f"missing unit in {value!r}; expected one of {units}")
    _reject_non_text(value, "bandwidth", "100MB/s")
    number, unit = _split(value, "bandwidth", "100MB/s")
    if not unit:
        raise UnitError(f"missing unit in {value!r}; expected one of {units}")
    if unit in BIT_RATE_UNITS:
        bits = _scale(value, number, unit, BIT_RATE_UNITS, "bits per second")
        rate = bits // 8
    elif unit in BYTE_RATE_UNITS:
        rate = _scale(value, number, unit, BYTE_RATE_UNITS, "bytes per second")
    else:
        raise UnitError(f"bad unit {unit!r} in {value!r}; expected one of {units}")
    if rate <= 0:
        below = " (less than one byte per second)" if number > 0 else ""
        raise UnitError(f"bandwidth must be positive, got {value!r}{below}")
    return rate


def parse_fraction(value: str | float) -> float:
    """A share in '30%', '2.5%' or a plain number (0.3); never negative.

    The one quantity that may be fractional: shares are compared, never used to size
    anything."""
    if isinstance(value, bool):
        raise UnitError(f"expected a share like '30%', got {value!r}")
    if isinstance(value, int | float):
        number = Decimal(str(value))
    else:
        _reject_non_text(value, "share", "30%")
        number, unit = _split(value, "share", "30%")
        if unit not in ("%", ""):
            raise UnitError(f"bad unit {unit!r} in {value!r}; expected %")
        if unit == "%":
            number /= 100
    if number < 0:
        raise UnitError(f"negative share {value!r}")
    return float(number)


def format_size(nbytes: int) -> str:
    """The shortest exact binary spelling of a size, e.g. 67108864 -> '64MiB'."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = SIZE_UNITS[unit]
        if nbytes and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return f"{nbytes}B"


def format_duration(ns: int) -> str:
    """The largest exact unit spelling of a duration, e.g. 2_000_000_000 -> '2s'."""
    for unit in ("s", "ms", "us"):
        scale = DURATION_UNITS[unit]
        if ns and ns % scale == 0:
            return f"{ns // scale}{unit}"
    return f"{ns}ns"


def format_frequency(hz: int) -> str:
    """An exact spelling of a frequency, e.g. 1_800_000_000 -> '1.8GHz'."""
    for unit in ("GHz", "MHz", "kHz"):
        scale = FREQUENCY_UNITS[unit]
        if hz >= scale:
            text = format(Decimal(hz) / scale, "f")
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{hz}Hz"


def format_bandwidth(rate: int) -> str:
    """The shortest exact byte-rate spelling, e.g. 100_000_000 -> '100MB/s', 524288 -> '512KiB/s'.

    Every unit the rate is at least one of is tried; ties go to the decimal units.
    """
    best = f"{rate}B/s"
    for unit, scale in BYTE_RATE_UNITS.items():
        if scale == 1 or rate < scale:
            continue
        text = format(Decimal(rate) / scale, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) + len(unit) < len(best):
            best = f"{text}{unit}"
    return best
