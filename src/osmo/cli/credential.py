"""``osmo credential set|list|delete``: secrets stored encrypted by the server."""

from __future__ import annotations

from pathlib import Path

import click

from .connect import api
from .errors import CliError, key_values
from .output import echo_json, format_option, table


@click.group()
def credential() -> None:
    """Credentials for data, registries and tasks (stored encrypted, never shown again)."""


@credential.command(name="set")
@click.argument("name")
@click.option(
    "--type",
    "ctype",
    type=click.Choice(["GENERIC", "REGISTRY", "DATA"], case_sensitive=False),
    default="GENERIC",
    show_default=True,
)
@click.option(
    "--payload", multiple=True, metavar="KEY=VALUE", help="A key and its value; repeatable."
)
@click.option(
    "--payload-file",
    multiple=True,
    metavar="KEY=PATH",
    help="A key whose value is a file's contents; repeatable.",
)
def credential_set(
    name: str, ctype: str, payload: tuple[str, ...], payload_file: tuple[str, ...]
) -> None:
    """Create or replace credential NAME.

    DATA: access_key_id, access_key, endpoint (s3://bucket, azure://account/container, gs://bucket)
    and optionally region, override_url, addressing_style; also kept in this client's config
    (mode 600) for direct transfers with 'osmo data'. REGISTRY: auth (or username and password),
    registry. GENERIC: any keys, injected into tasks through their 'credentials:' key.
    """
    values = key_values(payload, "--payload")
    for key, path in key_values(payload_file, "--payload-file").items():
        try:
            values[key] = Path(path).read_text()
        except OSError as exc:
            raise CliError(
                f"error: --payload-file {key}: cannot read {path}: {exc.strerror}"
            ) from None
    ctype = ctype.upper()
    with api() as c:
        result = c.set_credential(name, ctype, values)
    if ctype == "DATA":
        from ..storage.credentials import Credentials, save_local_credential

        try:
            local = save_local_credential(name, Credentials.model_validate(values))
        except Exception as exc:  # stored on the server; the local copy is a convenience
            click.echo(f"warning: not saved in the local client config: {exc}", err=True)
        else:
            click.echo(f"credential {name} ({ctype}) stored; local copy in {local}")
            return
    click.echo(f"credential {name} ({ctype}) stored with keys: {', '.join(result['keys'])}")


@credential.command(name="list")
@format_option
def credential_list(format_type: str) -> None:
    """Your credentials (names, types and keys; never values)."""
    with api() as c:
        result = c.credentials()
    if format_type == "json":
        echo_json(result)
        return
    rows = [
        [r["name"], r["type"], ",".join(r["keys"]), r.get("endpoint") or "", r["updated_at"]]
        for r in result["credentials"]
    ]
    click.echo(table(["NAME", "TYPE", "KEYS", "ENDPOINT", "UPDATED"], rows))


@credential.command(name="delete")
@click.argument("name")
def credential_delete(name: str) -> None:
    """Delete credential NAME (and its local copy, if any)."""
    with api() as c:
        c.delete_credential(name)
    try:
        from ..storage.credentials import delete_local_credential

        delete_local_credential(name)
    except Exception:  # no local copy is fine
        pass
    click.echo(f"credential {name} deleted")
