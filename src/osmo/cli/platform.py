"""Starting the platform: ``osmo standalone``, ``osmo server start``, ``osmo operator start``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import CliError

if TYPE_CHECKING:
    from ..settings import Settings


def _settings(host: str | None, port: int | None) -> Settings:
    from ..settings import Settings

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        return Settings(**overrides)
    except Exception as exc:
        raise CliError(f"invalid settings: {exc}") from None


def _bind(host: str, port: int) -> socket.socket:
    from ..service.server import BindError, bind

    try:
        return bind(host, port)
    except BindError as exc:
        raise CliError(f"error: {exc}") from None


@click.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option(
    "--port", default=None, type=int, help="Port to listen on (default 8080; 0 picks a free one)."
)
def standalone(host: str | None, port: int | None) -> None:
    """Run the whole platform on this machine: API, scheduler and a local operator."""
    from ..standalone import main as run

    settings = _settings(host, port)
    sock = _bind(settings.host, settings.port)

    def announce(url: str) -> None:
        click.echo(f"osmo standalone: serving {url} (state in {settings.home})", err=False)
        click.echo(f"  export OSMO_URL={url}", err=False)

    with contextlib.suppress(KeyboardInterrupt):
        run(settings, sock, announce)


@click.group()
def server() -> None:
    """The control plane."""


@server.command(name="start")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8080).")
def server_start(host: str | None, port: int | None) -> None:
    """Run the control plane (operators connect to it)."""
    from ..service.server import serve

    settings = _settings(host, port)
    sock = _bind(settings.host, settings.port)

    async def started(service: object, url: str) -> None:
        click.echo(f"osmo server: serving {url} (state in {settings.home})")
        if not settings.operator_tokens:
            click.echo(f"  operator bootstrap token in {settings.home / 'operator-token'}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, sock, on_started=started))


def _node_group(spec: str) -> dict[str, Any]:
    from ..spec.units import UnitError, parse_size

    group: dict[str, Any] = {"labels": {}}
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise CliError(f"error: --node-group expects KEY=VALUE items, got {item!r}")
        if key.startswith("label."):
            group["labels"][key[len("label.") :]] = value
        elif key in ("count", "gpus"):
            if not value.isdigit():
                raise CliError(f"error: --node-group {key} must be a whole number, got {value!r}")
            group[key] = int(value)
        elif key == "cpus":
            try:
                group[key] = float(value)
            except ValueError:
                raise CliError(
                    f"error: --node-group cpus must be a number, got {value!r}"
                ) from None
        elif key == "memory":
            try:
                group[key] = parse_size(value)
            except UnitError as exc:
                raise CliError(f"error: --node-group memory: {exc}") from None
        elif key in ("prefix", "gpu_type"):
            group[key] = value
        else:
            raise CliError(f"error: --node-group: unknown key {key!r}")
    return group


@click.group()
def operator() -> None:
    """Backend operators: connect compute to a control plane."""


@operator.command(name="start")
@click.option(
    "--server", "server_url", required=True, help="Control plane URL, e.g. http://host:8080."
)
@click.option("--backend", required=True, help="Backend name this operator serves.")
@click.option(
    "--token-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="File holding the bootstrap token.",
)
@click.option(
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "simulated", "kubernetes"]),
)
@click.option(
    "--namespace", default=None, help="kubernetes: the workflow namespace (default: config)."
)
@click.option(
    "--kubeconfig",
    default=None,
    type=click.Path(dir_okay=False),
    help="kubernetes: kubeconfig file (default: in-cluster account, else $KUBECONFIG).",
)
@click.option(
    "--config",
    "executor_config",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="kubernetes: executor config YAML (pod/group templates, pools, scheduler).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Where task folders live (default under OSMO_HOME).",
)
@click.option(
    "--nodes",
    default=4,
    show_default=True,
    type=click.IntRange(1),
    help="simulated: number of nodes.",
)
@click.option(
    "--node-cpus",
    default=8.0,
    show_default=True,
    type=click.FloatRange(0),
    help="simulated: CPUs per node.",
)
@click.option(
    "--node-memory",
    default="32Gi",
    show_default=True,
    help="simulated: memory per node (binary units).",
)
@click.option(
    "--node-gpus",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="simulated: GPUs per node.",
)
@click.option(
    "--gpu-type", default=None, help="simulated: GPU product name reported for the nodes."
)
@click.option(
    "--node-label",
    "node_labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="simulated: label on every node.",
)
@click.option(
    "--node-prefix", default="sim-node", show_default=True, help="simulated: node name prefix."
)
@click.option(
    "--node-group",
    "node_groups",
    multiple=True,
    metavar="SPEC",
    help="simulated: extra nodes, e.g. count=2,gpus=1,cpus=6,memory=8Gi,prefix=jetson,label.kind=jetson",
)
def operator_start(
    server_url: str,
    backend: str,
    token_file: str,
    executor: str,
    state_dir: str | None,
    nodes: int,
    node_cpus: float,
    node_memory: str,
    node_gpus: int,
    gpu_type: str | None,
    node_labels: tuple[str, ...],
    node_prefix: str,
    node_groups: tuple[str, ...],
    namespace: str | None,
    kubeconfig: str | None,
    executor_config: str | None,
) -> None:
    """Dial out to a control plane and run the tasks it admits to this backend."""
    from ..operator.connection import Refused
    from ..operator.runner import make_executor, run_operator
    from ..settings import Settings
    from ..spec.units import UnitError, parse_size

    try:
        token = Path(token_file).read_text().strip()
    except OSError as exc:
        raise CliError(f"error: cannot read token file {token_file}: {exc.strerror}") from None
    if not token:
        raise CliError(f"error: token file {token_file} is empty")
    options: dict[str, Any] = {}
    if executor == "simulated":
        try:
            memory = parse_size(node_memory)
        except UnitError as exc:
            raise CliError(f"error: --node-memory: {exc}") from None
        labels = {}
        for item in node_labels:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise CliError(f"error: --node-label expects KEY=VALUE, got {item!r}")
            labels[k] = v
        options = dict(
            nodes=nodes,
            node_cpus=node_cpus,
            node_memory=memory,
            node_gpus=node_gpus,
            gpu_type=gpu_type,
            node_labels=labels,
            name_prefix=node_prefix,
            node_groups=[_node_group(spec) for spec in node_groups],
        )
    if executor == "kubernetes":
        options = dict(namespace=namespace, kubeconfig=kubeconfig, config=executor_config)
    settings = Settings()
    folder = Path(state_dir) if state_dir else settings.operator_dir / backend
    click.echo(f"osmo operator: backend {backend} ({executor}) dialing {server_url}", err=True)
    try:
        chosen = make_executor(executor, folder, **options)
    except (ValueError, OSError) as exc:
        raise CliError(f"error: {exc}") from None
    try:
        asyncio.run(run_operator(server_url, backend, token, chosen))
    except Refused as exc:
        raise CliError(f"error: the server refused this operator: {exc}") from None
    except KeyboardInterrupt:
        pass
