"""``osmo workflow ...`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import CliError

SET_HELP = "Template variable KEY=VALUE (int, then float, else string); repeatable."
SET_STRING_HELP = "Template variable KEY=VALUE kept as a string; repeatable."


@click.group()
def workflow() -> None:
    """Submit, inspect and manage workflows."""


def _read_spec(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, expected a workflow YAML file") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None


@workflow.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--set", "set_", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--set-string", multiple=True, metavar="KEY=VALUE", help=SET_STRING_HELP)
@click.option("--offline", is_flag=True, help="Validate locally, without a server.")
@click.option("--render", is_flag=True, help="Print the rendered YAML (with --offline).")
@click.option("--pool", "-p", help="Pool to validate against (server-side checks).")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Workflow label; repeatable.")
@click.option("--format-type", "-t", type=click.Choice(["text", "json"]), default="text")
def validate(
    file: str,
    set_: tuple[str, ...],
    set_string: tuple[str, ...],
    offline: bool,
    render: bool,
    pool: str | None,
    label: tuple[str, ...],
    format_type: str,
) -> None:
    """Check a workflow file: template rendering, keys, names, dependencies, resources."""
    from ..spec import SpecError, parse_set_values, parse_workflow
    from ..spec import render as render_spec
    from ..spec.localfiles import inline_localpaths

    if not offline:
        _validate_on_server(file, set_, set_string, pool, label, format_type)
        return
    text = _read_spec(file)
    try:
        set_values = parse_set_values(list(set_), as_string=False, flag="--set")
        set_strings = parse_set_values(list(set_string), as_string=True, flag="--set-string")
        if render:
            click.echo(render_spec(text, set_values, set_strings).text, nl=False)
            return
        result = parse_workflow(text, set_values, set_strings)
        issues = inline_localpaths(result.spec, Path(file).resolve().parent, text)
        if issues:
            raise SpecError(issues)
    except SpecError as exc:
        raise CliError(exc.format(file)) from None
    spec = result.spec
    if format_type == "json":
        click.echo(
            json.dumps(
                {
                    "valid": True,
                    "name": spec.name,
                    "groups": len(spec.groups),
                    "tasks": len(spec.tasks),
                }
            )
        )
    else:
        click.echo(f"valid: {spec.summary()}")


def _validate_on_server(
    file: str,
    set_: tuple[str, ...],
    set_string: tuple[str, ...],
    pool: str | None,
    label: tuple[str, ...],
    format_type: str,
) -> None:
    """Server-side validation: everything offline checks, plus the pool and server limits."""
    from .connect import api
    from .workflow_api import inline_localpaths

    text = _read_spec(file)
    template = None
    inlined = inline_localpaths(file, text, set_, set_string)
    if inlined is not None:
        template, text = text, inlined
        set_ = set_string = ()
    with api(file) as c:
        result = c.submit(
            pool or "default",
            text,
            set_values=list(set_),
            set_strings=list(set_string),
            template=template,
            labels=list(label),
            validation_only=True,
        )
    if format_type == "json":
        click.echo(json.dumps({k: result[k] for k in ("valid", "name", "groups", "tasks")}))
    else:
        g, t = result["groups"], result["tasks"]
        click.echo(
            f"valid: workflow {result['name']}: {g} group{'s' if g != 1 else ''}, "
            f"{t} task{'s' if t != 1 else ''} (checked by the server for pool {pool or 'default'})"
        )
