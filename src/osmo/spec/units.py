"""Parsing of the small value languages inside a spec: sizes, durations, exit-code ranges."""

from __future__ import annotations

import re

_BINARY = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5}
_SIZE_RE = re.compile(r"^([0-9]{1,30})(Ki|Mi|Gi|Ti|Pi)?$")
_DECIMAL_HINT_RE = re.compile(r"^([0-9]{1,30}(?:\.[0-9]{1,30})?)\s*([kKmMgGtTpP])([bBiI]?)$")
_DURATION_RE = re.compile(r"^([0-9]{1,30})([smhd])$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WHOLE_RE = re.compile(r"[0-9]{1,30}")
_UNIT_ORDER = ("", "Ki", "Mi", "Gi", "Ti", "Pi")


def is_whole(text: str) -> bool:
    """``text`` is a whole number in ASCII digits (not ``²``, not thousands of digits)."""
    return _WHOLE_RE.fullmatch(text) is not None


class UnitError(ValueError):
    """A value in the wrong format; the message says what is expected."""


def parse_size(value: object) -> int:
    """Bytes from a binary-unit quantity (``16Gi``, ``512Mi``, or a plain byte count)."""
    if isinstance(value, bool):
        raise UnitError(f"expected a size such as 16Gi, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"size must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise UnitError(f"expected a size such as 16Gi, got {value!r}")
    text = value.strip()
    m = _SIZE_RE.match(text)
    if m:
        return int(m.group(1)) * _BINARY[m.group(2) or ""]
    hint = _DECIMAL_HINT_RE.match(text)
    if hint:
        number, unit = hint.group(1), f"{hint.group(2).upper()}i"
        suggestion = f"{number}{unit}"
        if "." in number:
            # A whole number of the next smaller unit, when there is one (1.5Gi -> 1536Mi).
            smaller = round(float(number) * 1024)
            suggestion = f"{smaller}{_UNIT_ORDER[_UNIT_ORDER.index(unit) - 1]}"
            if hint.group(2).isupper() and hint.group(3) == "i":
                raise UnitError(
                    f"size {value!r} is not a whole number; use whole numbers with binary "
                    f"units Ki, Mi, Gi, Ti (e.g. {suggestion})"
                )
        elif f"{hint.group(2)}{hint.group(3)}" == unit:  # only the space is wrong
            raise UnitError(f"size {value!r} must be written without spaces (e.g. {suggestion})")
        raise UnitError(
            f"size {value!r} uses decimal or unknown units; use binary units "
            f"Ki, Mi, Gi, Ti (e.g. {suggestion})"
        )
    raise UnitError(f"invalid size {value!r}; use a whole number with Ki, Mi, Gi or Ti (e.g. 16Gi)")


def parse_duration(value: object) -> int:
    """Seconds from ``<int><unit>`` with unit s, m, h or d (no mixed units), or whole seconds."""
    if isinstance(value, bool):
        raise UnitError(f"expected a duration such as 30m, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"duration must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise UnitError(f"expected a duration such as 30m, got {value!r}")
    m = _DURATION_RE.match(value.strip())
    if not m:
        raise UnitError(
            f"invalid duration {value!r}; use a whole number and one unit of s, m, h or d "
            "(e.g. 90m, 8h, 2d; mixed units such as 1h30m are not accepted)"
        )
    return int(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_cache_size(value: object) -> str:
    """``cacheSize``: an absolute binary size or a percentage (1-100%)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = value.strip()[:-1]
        if not is_whole(number) or not 0 < int(number) <= 100:
            raise UnitError(f"invalid cache size {value!r}; a percentage must be 1% to 100%")
        return value.strip()
    parse_size(value)
    return str(value).strip()


MAX_EXIT_CODE = 65535


def parse_code_ranges(value: object) -> list[tuple[int, int]]:
    """Exit-code ranges ``0,1-10,16`` as inclusive (start, end) pairs."""
    if isinstance(value, bool):
        raise UnitError(f"expected exit codes such as 1-10,16, got {value!r}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise UnitError(f"expected exit codes such as 1-10,16, got {value!r}")
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise UnitError(f"empty item in exit-code list {text!r}")
        if "-" in part:
            lo_text, _, hi_text = part.partition("-")
            lo_text, hi_text = lo_text.strip(), hi_text.strip()
            if not is_whole(lo_text) or not is_whole(hi_text):
                raise UnitError(f"invalid exit-code range {part!r}; expected START-END")
            lo, hi = int(lo_text), int(hi_text)
            if lo > hi:
                raise UnitError(f"exit-code range {part!r} ends before it starts")
        else:
            if not is_whole(part):
                raise UnitError(f"invalid exit code {part!r}; expected a number or START-END")
            lo = hi = int(part)
        if hi > MAX_EXIT_CODE:
            raise UnitError(f"exit code {hi} is out of range (0-{MAX_EXIT_CODE})")
        ranges.append((lo, hi))
    return ranges
