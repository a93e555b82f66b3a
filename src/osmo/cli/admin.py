"""Pools, backends and nodes: ``osmo pool ...``, ``osmo backend ...``, ``osmo resource info``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .connect import api
from .errors import CliError
from .output import echo_fields, echo_json, format_option, table


def _load_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise CliError(f"error: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"error: {path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CliError(f"error: {path}: expected a mapping of pool settings")
    return data


def _apply_flags(
    config: dict[str, Any],
    backend: str | None,
    description: str | None,
    maintenance: bool | None,
    gpu_guarantee: int | None,
    gpu_maximum: int | None,
    gpu_weight: float | None,
) -> dict[str, Any]:
    if backend is not None:
        config["backend"] = backend
    if description is not None:
        config["description"] = description
    if maintenance is not None:
        config["enable_maintenance"] = maintenance
    gpu = config.setdefault("resources", {}).setdefault("gpu", {})
    for key, value in (
        ("guarantee", gpu_guarantee),
        ("maximum", gpu_maximum),
        ("weight", gpu_weight),
    ):
        if value is not None:
            gpu[key] = value
    return config


def pool_options(func: Any) -> Any:
    for decorator in reversed(
        [
            click.option(
                "--file",
                "-f",
                "file",
                type=click.Path(dir_okay=False),
                help="Pool config YAML (PoolConfig fields).",
            ),
            click.option("--backend", "-b", help="Backend the pool runs on."),
            click.option("--description", "-d"),
            click.option(
                "--maintenance/--no-maintenance",
                default=None,
                help="Refuse new workflows while set.",
            ),
            click.option(
                "--gpu-guarantee",
                type=int,
                help="GPUs guaranteed to NORMAL/HIGH work (-1 unlimited).",
            ),
            click.option(
                "--gpu-maximum", type=int, help="GPU cap including borrowed (-1 unlimited)."
            ),
            click.option("--gpu-weight", type=float, help="Share of capacity above guarantees."),
        ]
    ):
        func = decorator(func)
    return func


def register_pool_commands(pool: click.Group) -> None:
    @pool.command(name="create")
    @click.argument("name")
    @pool_options
    def pool_create(
        name: str,
        file: str | None,
        backend: str | None,
        description: str | None,
        maintenance: bool | None,
        gpu_guarantee: int | None,
        gpu_maximum: int | None,
        gpu_weight: float | None,
    ) -> None:
        """Create a pool (from --file and/or flags)."""
        config = _apply_flags(
            _load_config(file),
            backend,
            description,
            maintenance,
            gpu_guarantee,
            gpu_maximum,
            gpu_weight,
        )
        if "backend" not in config:
            raise CliError("error: a pool needs a backend (--backend or 'backend:' in --file)")
        with api() as c:
            existing = c.pools()["pools"]
            if any(p["name"] == name for p in existing):
                raise CliError(f"error: pool {name!r} exists; use 'osmo pool update'")
            c.put_pool(name, config)
        click.echo(f"pool {name} created on backend {config['backend']}")

    @pool.command(name="update")
    @click.argument("name")
    @pool_options
    def pool_update(
        name: str,
        file: str | None,
        backend: str | None,
        description: str | None,
        maintenance: bool | None,
        gpu_guarantee: int | None,
        gpu_maximum: int | None,
        gpu_weight: float | None,
    ) -> None:
        """Change a pool: --file replaces its config, flags change single fields."""
        with api() as c:
            config = _load_config(file) if file else c.pool_config(name)
            config = _apply_flags(
                config, backend, description, maintenance, gpu_guarantee, gpu_maximum, gpu_weight
            )
            c.put_pool(name, config)
        click.echo(f"pool {name} updated")

    @pool.command(name="show")
    @click.argument("name")
    def pool_show(name: str) -> None:
        """Print a pool's configuration (YAML)."""
        import yaml

        with api() as c:
            config = c.pool_config(name)
        click.echo(yaml.safe_dump(config, sort_keys=False), nl=False)

    @pool.command(name="delete")
    @click.argument("name")
    def pool_delete(name: str) -> None:
        """Delete a pool (refused while it has unfinished work)."""
        with api() as c:
            c.delete_pool(name)
        click.echo(f"pool {name} deleted")


@click.group()
def backend() -> None:
    """Backends: compute that operators connect."""


@backend.command(name="list")
@format_option
def backend_list(format_type: str) -> None:
    """Backends with their state, version, nodes and last heartbeat."""
    with api() as c:
        result = c.backends()
    if format_type == "json":
        echo_json(result)
        return
    rows = [
        [
            b["name"],
            "online" if b["online"] else "offline",
            b["executor"],
            b["version"] or "",
            b["nodes"],
            b["last_heartbeat"] or "",
            ",".join(b["pools"]),
        ]
        for b in result["backends"]
    ]
    click.echo(
        table(["BACKEND", "STATE", "EXECUTOR", "VERSION", "NODES", "LAST HEARTBEAT", "POOLS"], rows)
    )


@backend.command(name="delete")
@click.argument("name")
def backend_delete(name: str) -> None:
    """Forget a backend (refused while it is connected or has tasks)."""
    with api() as c:
        c.delete_backend(name)
    click.echo(f"backend {name} deleted")


@backend.group(name="token")
def backend_token() -> None:
    """Operator bootstrap tokens."""


@backend_token.command(name="create")
@click.argument("name")
@format_option
def token_create(name: str, format_type: str) -> None:
    """Make a new token for backend NAME and print it (once; it is stored hashed)."""
    with api() as c:
        result = c.create_backend_token(name)
    if format_type == "json":
        echo_json(result)
        return
    click.echo(result["token"])
    if result.get("previous_valid_until"):
        click.echo(
            f"earlier tokens of {name} stay valid until {result['previous_valid_until']}", err=True
        )


@backend_token.command(name="revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke every token of backend NAME now (its operator is disconnected)."""
    with api() as c:
        result = c.revoke_backend_tokens(name)
    click.echo(f"revoked {result['revoked']} token(s) of backend {name}")


def register_resource_commands(resource: click.Group) -> None:
    @resource.command(name="info")
    @click.argument("node")
    @format_option
    def resource_info(node: str, format_type: str) -> None:
        """One node: capacity, use, labels, pools and platforms."""
        with api() as c:
            n = c.resource(node)
        if format_type == "json":
            echo_json(n)
            return
        gib = 1024**3
        lines = [
            ("Node", n["name"]),
            ("Backend", n["backend"]),
            ("Available", "yes" if n["available"] else "no"),
            ("CPU", f"{n['used_cpus']:g}/{n['cpus']:g}"),
            (
                "GPU",
                f"{n['used_gpus']}/{n['gpus']}"
                + (f" ({n['gpu_type']})" if n.get("gpu_type") else ""),
            ),
            ("Memory", f"{n['used_memory_bytes'] / gib:.1f}/{n['memory_bytes'] / gib:.1f}Gi"),
            ("Pools", ", ".join(n["pools"])),
            ("Platforms", ", ".join(n["platforms"])),
            ("Labels", ", ".join(f"{k}={v}" for k, v in n["labels"].items())),
        ]
        echo_fields(lines)
