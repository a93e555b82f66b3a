"""Plain-text tables and JSON output (no heavy imports: CLI start-up time matters)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def echo_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """``Name : value`` lines with the names aligned."""
    width = max((len(k) for k, _ in fields), default=0)
    for k, v in fields:
        click.echo(f"{k.ljust(width)} : {v}")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def format_option(func: Any) -> Any:
    return click.option(
        "--format-type",
        "-t",
        "format_type",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Output format.",
    )(func)
