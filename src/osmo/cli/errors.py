"""Errors the CLI reports as a message and an exit code, never as a traceback."""

from __future__ import annotations


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def key_values(items: tuple[str, ...] | list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a mapping (the value may contain ``=``); a clear error otherwise."""
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CliError(f"error: {flag} expects KEY=VALUE, got {item!r}")
        out[k] = v
    return out
