"""The small value languages of a spec: sizes, durations, cache sizes, exit-code ranges."""

from __future__ import annotations

import pytest

from osmo.spec.units import (
    UnitError,
    is_whole,
    parse_cache_size,
    parse_code_ranges,
    parse_duration,
    parse_size,
)

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("16Gi", 16 * GiB),
        ("512Mi", 512 * MiB),
        ("1Ki", KiB),
        ("2Ti", 2 * TiB),
        ("1Pi", 1024**5),
        (" 8Gi ", 8 * GiB),
        ("0", 0),
        ("2048", 2048),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "16GB",
            "size '16GB' uses decimal or unknown units; use binary units Ki, Mi, Gi, Ti "
            "(e.g. 16Gi)",
        ),
        (
            "16G",
            "size '16G' uses decimal or unknown units; use binary units Ki, Mi, Gi, Ti (e.g. 16Gi)",
        ),
        (
            "16gi",
            "size '16gi' uses decimal or unknown units; use binary units Ki, Mi, Gi, Ti "
            "(e.g. 16Gi)",
        ),
        (
            "100k",
            "size '100k' uses decimal or unknown units; use binary units Ki, Mi, Gi, Ti "
            "(e.g. 100Ki)",
        ),
        (
            "1.5GB",
            "size '1.5GB' uses decimal or unknown units; use binary units Ki, Mi, Gi, Ti "
            "(e.g. 1536Mi)",
        ),
        (
            "1.5Gi",
            "size '1.5Gi' is not a whole number; use whole numbers with binary units Ki, Mi, Gi, "
            "Ti (e.g. 1536Mi)",
        ),
        (
            "0.5Ki",
            "size '0.5Ki' is not a whole number; use whole numbers with binary units Ki, Mi, Gi, "
            "Ti (e.g. 512)",
        ),
        ("lots", "invalid size 'lots'; use a whole number with Ki, Mi, Gi or Ti (e.g. 16Gi)"),
        ("-1Gi", "invalid size '-1Gi'; use a whole number with Ki, Mi, Gi or Ti (e.g. 16Gi)"),
        ("16 Gi", "size '16 Gi' must be written without spaces (e.g. 16Gi)"),
        (
            "16 GB",
            "size '16 GB' uses decimal or unknown units; use binary units Ki, Mi, Gi, Ti "
            "(e.g. 16Gi)",
        ),
        ("²Gi", "invalid size '²Gi'; use a whole number with Ki, Mi, Gi or Ti (e.g. 16Gi)"),
        ("", "invalid size ''; use a whole number with Ki, Mi, Gi or Ti (e.g. 16Gi)"),
        (-1, "size must not be negative, got -1"),
        (True, "expected a size such as 16Gi, got True"),
        (1.5, "expected a size such as 16Gi, got 1.5"),
        (None, "expected a size such as 16Gi, got None"),
    ],
)
def test_parse_size_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_size(value)
    assert str(info.value) == message


def test_parse_size_refuses_numbers_too_long_to_be_sizes() -> None:
    with pytest.raises(UnitError, match=r"^invalid size"):
        parse_size("9" * 5000 + "Gi")
    assert parse_size("9" * 30) == int("9" * 30)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("10m", 600), ("8h", 28800), ("2d", 172800), ("0s", 0), (" 5m ", 300), (90, 90)],
)
def test_parse_duration(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


DURATION_HINT = (
    "use a whole number and one unit of s, m, h or d (e.g. 90m, 8h, 2d; mixed units such as "
    "1h30m are not accepted)"
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1h30m", f"invalid duration '1h30m'; {DURATION_HINT}"),
        ("1.5h", f"invalid duration '1.5h'; {DURATION_HINT}"),
        ("10min", f"invalid duration '10min'; {DURATION_HINT}"),
        ("2 hours", f"invalid duration '2 hours'; {DURATION_HINT}"),
        ("10", f"invalid duration '10'; {DURATION_HINT}"),
        ("-5m", f"invalid duration '-5m'; {DURATION_HINT}"),
        ("5w", f"invalid duration '5w'; {DURATION_HINT}"),
        (-5, "duration must not be negative, got -5"),
        (False, "expected a duration such as 30m, got False"),
        (2.5, "expected a duration such as 30m, got 2.5"),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("50%", "50%"), ("100%", "100%"), ("1%", "1%"), ("10Gi", "10Gi"), (" 5% ", "5%")],
)
def test_parse_cache_size(value: str, expected: str) -> None:
    assert parse_cache_size(value) == expected


@pytest.mark.parametrize("value", ["0%", "101%", "abc%", "50.5%", "²%", "%"])
def test_parse_cache_size_percent_errors(value: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_cache_size(value)
    assert str(info.value) == f"invalid cache size {value!r}; a percentage must be 1% to 100%"


def test_parse_cache_size_absolute_errors_are_size_errors() -> None:
    with pytest.raises(UnitError, match="uses decimal or unknown units"):
        parse_cache_size("10GB")


@pytest.mark.parametrize(
    ("value", "ranges"),
    [
        ("0", [(0, 0)]),
        (3, [(3, 3)]),
        ("0,1-10,16", [(0, 0), (1, 10), (16, 16)]),
        (" 1 - 3 , 5 ", [(1, 3), (5, 5)]),
        ("255", [(255, 255)]),
        ("0-65535", [(0, 65535)]),
        ("7-7", [(7, 7)]),
    ],
)
def test_parse_code_ranges(value: object, ranges: list[tuple[int, int]]) -> None:
    assert parse_code_ranges(value) == ranges


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty item in exit-code list ''"),
        ("1,,2", "empty item in exit-code list '1,,2'"),
        ("1,", "empty item in exit-code list '1,'"),
        ("5-2", "exit-code range '5-2' ends before it starts"),
        ("a", "invalid exit code 'a'; expected a number or START-END"),
        ("²", "invalid exit code '²'; expected a number or START-END"),
        ("1.5", "invalid exit code '1.5'; expected a number or START-END"),
        ("1-", "invalid exit-code range '1-'; expected START-END"),
        ("-1", "invalid exit-code range '-1'; expected START-END"),
        ("1-2-3", "invalid exit-code range '1-2-3'; expected START-END"),
        ("70000", "exit code 70000 is out of range (0-65535)"),
        ("0-65536", "exit code 65536 is out of range (0-65535)"),
        ("9" * 31, f"invalid exit code '{'9' * 31}'; expected a number or START-END"),
        (True, "expected exit codes such as 1-10,16, got True"),
        ([0], "expected exit codes such as 1-10,16, got [0]"),
        (1.5, "expected exit codes such as 1-10,16, got 1.5"),
    ],
)
def test_parse_code_range_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_code_ranges(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        ("0", True),
        ("123", True),
        ("9" * 30, True),
        ("9" * 31, False),
        ("", False),
        ("-1", False),
        ("1.0", False),
        ("²", False),
        ("\u0661", False),  # ARABIC-INDIC DIGIT ONE
        (" 1", False),
    ],
)
def test_is_whole(text: str, whole: bool) -> None:
    assert is_whole(text) is whole
