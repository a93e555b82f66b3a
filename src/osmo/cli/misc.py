"""``osmo version``, ``osmo login``, ``osmo logout``, ``osmo pool``, ``osmo resource``."""

from __future__ import annotations

import click

from .. import __version__
from .connect import api
from .errors import CliError
from .output import echo_json, format_option, table


@click.command()
@format_option
def version(format_type: str) -> None:
    """Client and server versions."""
    from ..client import ApiError, ConnectionFailed, load_profile

    info: dict[str, object] = {"client": __version__}
    profile = load_profile()
    if profile.url:
        from ..client import OsmoClient

        with OsmoClient(profile.url, user=profile.user, timeout=10) as c:
            try:
                info["server"] = c.version()["version"]
                info["url"] = profile.url
            except (ApiError, ConnectionFailed) as exc:
                info["server_error"] = str(exc)
    if format_type == "json":
        echo_json(info)
        return
    click.echo(f"client {__version__}")
    if "server" in info:
        click.echo(f"server {info['server']} at {info['url']}")
    elif "server_error" in info:
        click.echo(f"server: {info['server_error']}")


@click.command()
@click.argument("url")
@click.option("--username", help="User name to act as (embedded/dev servers trust it).")
def login(url: str, username: str | None) -> None:
    """Remember a server URL (and user) for later commands."""
    from ..client import ApiError, ConnectionFailed, OsmoClient, save_profile

    with OsmoClient(url, user=username, timeout=10) as c:
        try:
            v = c.version()
        except (ApiError, ConnectionFailed) as exc:
            raise CliError(f"error: {exc}") from None
    path = save_profile(url, username)
    click.echo(f"logged in to {url} (server {v['version']}); profile saved in {path}")


@click.command()
def logout() -> None:
    """Forget the stored server URL and user (local DATA credentials are kept)."""
    from ..client.profile import clear_profile

    clear_profile()
    click.echo("logged out")


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f}Gi"


@click.group()
def pool() -> None:
    """Pools workflows run in."""


@pool.command(name="list")
@format_option
def pool_list(format_type: str) -> None:
    """Pools with their backend and capacity used/total."""
    with api() as c:
        result = c.pools()
    if format_type == "json":
        echo_json(result)
        return

    def quota(p: dict[str, object]) -> str:
        q = p["gpu_quota"]
        assert isinstance(q, dict)
        if q.get("guarantee") is None:
            return f"{q['used']}/-"
        return f"{q['used']}/{q['guarantee']} (free {q['free']})"

    rows = [
        [
            p["name"],
            p["backend"],
            p["status"],
            quota(p),
            p["gpu_quota"]["borrowed"],
            f"{p['used']['gpus']:g}/{p['capacity']['gpus']:g}",
            f"{p['used']['cpus']:g}/{p['capacity']['cpus']:g}",
            f"{_gib(p['used']['memory_bytes'])}/{_gib(p['capacity']['memory_bytes'])}",
            p["queued_groups"],
        ]
        for p in result["pools"]
    ]
    headers = [
        "POOL",
        "BACKEND",
        "STATUS",
        "GPU QUOTA USED",
        "BORROWED",
        "GPU",
        "CPU",
        "MEMORY",
        "QUEUED",
    ]
    click.echo(table(headers, rows))


@click.group()
def resource() -> None:
    """Nodes that backends report."""


@resource.command(name="list")
@click.option("--pool", "-p", "pools", multiple=True, help="Only nodes of these pools.")
@format_option
def resource_list(pools: tuple[str, ...], format_type: str) -> None:
    """Nodes with CPU, GPU and memory used/total."""
    with api() as c:
        result = c.resources(list(pools))
    if format_type == "json":
        echo_json(result)
        return
    rows = [
        [
            n["name"],
            n["backend"],
            ",".join(n["pools"]),
            f"{n['used_cpus']:g}/{n['cpus']:g}",
            f"{n['used_gpus']}/{n['gpus']}",
            f"{_gib(n['used_memory_bytes'])}/{_gib(n['memory_bytes'])}",
            "yes" if n["available"] else "no",
        ]
        for n in result["resources"]
    ]
    click.echo(table(["NODE", "BACKEND", "POOLS", "CPU", "GPU", "MEMORY", "AVAILABLE"], rows))
