"""Unit parsing: the only place unit strings become integers (bytes, ns, Hz)."""

from __future__ import annotations

import pytest

from framework.errors import UnitError
from framework.units import (
    BANDWIDTH_UNITS,
    BIT_RATE_UNITS,
    BYTE_RATE_UNITS,
    format_bandwidth,
    format_duration,
    format_frequency,
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_frequency,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MiB", 64 << 20),
        ("16M", 16 << 20),
        ("2GiB", 2 << 30),
        ("1TiB", 1 << 40),
        ("4K", 4096),
        ("1.5KiB", 1536),
        (" 256 MiB ", 256 << 20),
        ("4096", 4096),
        ("12B", 12),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size_accepts_binary_units_and_plain_bytes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "3MB/s",
            "bad unit 'MB/s' in '3MB/s'; expected one of B, KiB, MiB, GiB, TiB, K, M, G, T",
        ),
        ("128MB", "bad unit 'MB' in '128MB'; expected one of B, KiB, MiB, GiB, TiB, K, M, G, T"),
        ("MiB", "no number in 'MiB'; expected a size like '64MiB'"),
        ("1.5B", "'1.5B' is not a whole number of bytes"),
        ("-1M", "negative quantity '-1M'"),
        (-5, "negative size -5"),
        (True, "expected a size like '64MiB', got bool True"),
        (1.5, "expected a size like '64MiB', got float 1.5"),
    ],
)
def test_parse_size_errors_name_the_problem(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_size(value)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10ms", 10_000_000),
        ("2s", 2_000_000_000),
        ("500us", 500_000),
        ("500µs", 500_000),
        ("100ns", 100),
        ("1.5ms", 1_500_000),
        ("0", 0),
        (0, 0),
    ],
)
def test_parse_duration_gives_nanoseconds(text: str | int, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10", "missing unit in '10'; expected one of ns, us, µs, ms, s"),
        (10, "missing unit in 10; expected one of ns, us, µs, ms, s"),
        ("10sec", "bad unit 'sec' in '10sec'; expected one of ns, us, µs, ms, s"),
        ("0.5ns", "'0.5ns' is not a whole number of nanoseconds"),
        ("ms", "no number in 'ms'; expected a duration like '10ms'"),
    ],
)
def test_parse_duration_errors(value: str | int, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.8GHz", 1_800_000_000),
        ("33.333333MHz", 33_333_333),
        ("100Hz", 100),
        ("14.318kHz", 14_318),
        ("100", 100),
        (512, 512),
    ],
)
def test_parse_frequency_gives_hertz(text: str | int, expected: int) -> None:
    assert parse_frequency(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0Hz", "frequency must be positive, got '0Hz'"),
        ("3GB", "bad unit 'GB' in '3GB'; expected one of Hz, kHz, MHz, GHz"),
        ("33.3333333MHz", "'33.3333333MHz' is not a whole number of hertz"),
    ],
)
def test_parse_frequency_errors(value: str, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_frequency(value)
    assert str(info.value) == message


def test_formatters_round_trip_through_the_parsers() -> None:
    for size in (1, 4096, 96 << 20, 64 << 20, 3 << 30, 256 << 30):
        assert parse_size(format_size(size)) == size
    for ns in (1, 1500, 10_000_000, 2_000_000_000):
        assert parse_duration(format_duration(ns)) == ns
    for hz in (100, 33_333_333, 1_800_000_000, 14_318_180):
        assert parse_frequency(format_frequency(hz)) == hz
    assert format_size(96 << 20) == "96MiB"
    assert format_frequency(1_800_000_000) == "1.8GHz"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100MB/s", 100_000_000),
        ("1.5GB/s", 1_500_000_000),
        ("512KiB/s", 512 * 1024),
        ("1Gbit/s", 125_000_000),
        ("100Mbit/s", 12_500_000),
        ("10kB/s", 10_000),
        ("2MiB/s", 2 << 20),
        ("1GiB/s", 1 << 30),
        ("64kbit/s", 8_000),
        ("8bit/s", 1),
        (" 3 B/s ", 3),
        # A bit rate that is not whole bytes rounds down (documented in parse_bandwidth).
        ("12bit/s", 1),
        ("1.001kbit/s", 125),
    ],
)
def test_parse_bandwidth_gives_bytes_per_second(text: str, expected: int) -> None:
    assert parse_bandwidth(text) == expected


_ALL = ", ".join(BANDWIDTH_UNITS)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0MB/s", "bandwidth must be positive, got '0MB/s'"),
        ("0Gbit/s", "bandwidth must be positive, got '0Gbit/s'"),
        ("4bit/s", "bandwidth must be positive, got '4bit/s' (less than one byte per second)"),
        ("-1MB/s", "negative quantity '-1MB/s'"),
        ("-8bit/s", "negative quantity '-8bit/s'"),
        ("100MB", f"bad unit 'MB' in '100MB'; expected one of {_ALL}"),
        ("1Gbps", f"bad unit 'Gbps' in '1Gbps'; expected one of {_ALL}"),
        ("1KB/s", f"bad unit 'KB/s' in '1KB/s'; expected one of {_ALL}"),
        ("100", f"missing unit in '100'; expected one of {_ALL}"),
        (100, f"missing unit in 100; expected one of {_ALL}"),
        ("1.5B/s", "'1.5B/s' is not a whole number of bytes per second"),
        ("0.5bit/s", "'0.5bit/s' is not a whole number of bits per second"),
        ("MB/s", "no number in 'MB/s'; expected a bandwidth like '100MB/s'"),
        (True, "expected a bandwidth like '100MB/s', got bool True"),
        (1.5, "expected a bandwidth like '100MB/s', got float 1.5"),
    ],
)
def test_parse_bandwidth_errors_name_the_problem(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_bandwidth(value)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_bandwidth_units_are_decimal_for_k_m_g_and_binary_for_kib_mib_gib() -> None:
    assert BYTE_RATE_UNITS["MB/s"] == 10**6 and BYTE_RATE_UNITS["MiB/s"] == 1 << 20
    assert BIT_RATE_UNITS["Gbit/s"] == 10**9
    assert BANDWIDTH_UNITS == (*BYTE_RATE_UNITS, *BIT_RATE_UNITS)


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (100_000_000, "100MB/s"),
        (125_000_000, "125MB/s"),
        (1_500_000_000, "1.5GB/s"),
        (512 * 1024, "512KiB/s"),
        (1 << 30, "1GiB/s"),
        (1536, "1536B/s"),
        (1, "1B/s"),
    ],
)
def test_format_bandwidth_is_the_shortest_exact_spelling(rate: int, text: str) -> None:
    assert format_bandwidth(rate) == text


def test_bandwidth_round_trips_through_format_and_parse() -> None:
    for rate in (1, 999, 1536, 10_000, 12_500_000, 125_000_000, 1_048_576_000, 3 << 30):
        assert parse_bandwidth(format_bandwidth(rate)) == rate
    for text in ("1Gbit/s", "100Mbit/s", "512KiB/s", "1.5GB/s"):
        assert parse_bandwidth(format_bandwidth(parse_bandwidth(text))) == parse_bandwidth(text)
