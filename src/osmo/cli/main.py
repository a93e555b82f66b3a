"""The ``osmo`` command: a thin shell over the spec library and the typed client."""

from __future__ import annotations

import sys

import click

from .. import __version__
from .admin import backend, register_pool_commands, register_resource_commands
from .credential import credential
from .data import data
from .dataset import dataset
from .errors import CliError
from .misc import login, logout, pool, resource, version
from .platform import operator, server, standalone
from .workflow import workflow
from .workflow_api import COMMANDS as WORKFLOW_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="WARNING", help="Log level for the client.", show_default=True)
@click.version_option(__version__, "--client-version", prog_name="osmo")
def cli(log_level: str) -> None:
    """OSMO: write a workflow once in YAML, run it on any compute and storage you bring."""
    import logging

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


for command in WORKFLOW_COMMANDS:
    workflow.add_command(command)
register_pool_commands(pool)
register_resource_commands(resource)
for command in (
    workflow,
    standalone,
    server,
    operator,
    login,
    logout,
    version,
    pool,
    resource,
    backend,
    credential,
    data,
    dataset,
):
    cli.add_command(command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except CliError as exc:
        if exc.message:
            click.echo(exc.message, err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # last resort: never show a traceback to a user
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
