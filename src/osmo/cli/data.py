"""``osmo data upload|download|list|delete|check``: transfers straight between this machine and a
bucket, with the DATA credentials of the local client config (``osmo credential set --type
DATA``) or the environment. All logic lives in ``osmo.storage``; it is imported only when a
command runs (CLI start-up stays fast)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import CliError
from .output import echo_json, format_option, table

if TYPE_CHECKING:
    from ..storage import Progress, Store, TransferOptions, TransferResult


@click.group()
def data() -> None:
    """Move data between this machine and object storage (s3://, gs://, azure://, file://)."""


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class ProgressBar:
    """One line on stderr, redrawn in place (only on a terminal, unless forced)."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self.start = time.monotonic()
        self.drawn = False

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.start, 1e-6)
        frac = p.bytes_done / p.bytes_total if p.bytes_total else 1.0
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = (
            f"\r{self.label} [{bar}] {frac * 100:5.1f}%  {_human(p.bytes_done)}/"
            f"{_human(p.bytes_total)}  {p.files_done}/{p.files_total} files  "
            f"{_human(p.bytes_done / elapsed)}/s"
        )
        sys.stderr.write(line)
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _exit_now(code: int) -> None:
    """End the ``osmo`` process without interpreter finalization once a command that used the
    native storage clients is done: their runtime threads can still be tearing down then, and
    finalizing under them has aborted the process after the work had completed. Only for the
    console script (``sys.argv[0]`` is ``osmo``), never in-process (tests, SDK users)."""
    if Path(sys.argv[0]).name == "osmo" and "obstore" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@contextmanager
def _storage_errors() -> Iterator[None]:
    from ..storage import StorageError

    try:
        yield
    except StorageError as e:
        click.echo(f"error: {e}", err=True)
        _exit_now(1)
        raise CliError("") from e


def _open(uri: str, config_file: str | None = None) -> Store:
    from ..storage import load_local_credentials, open_store, parse_url, resolve_credentials

    creds = None
    if config_file is not None and not uri.startswith("file:"):
        parse_url(uri)
        creds = resolve_credentials(uri, local=load_local_credentials(Path(config_file)))
    return open_store(uri, creds)


def _options(
    regex: str | None,
    processes: int,
    threads: int,
    resume: bool,
    progress: Callable[[Progress], None] | None,
) -> TransferOptions:
    from ..storage import TransferOptions

    if processes < 1 or threads < 1:
        raise CliError("--processes and --threads must be at least 1")
    return TransferOptions(
        regex=regex, processes=processes, threads=threads, resume=resume, progress=progress
    )


def _report(kind: str, uri: str, result: TransferResult, benchmark_out: str | None) -> None:
    secs = max(result.seconds, 1e-9)
    summary = (
        f"{kind}: {result.files} files, {_human(result.bytes)} in {result.seconds:.2f} s "
        f"({_human(result.bytes_sent / secs)}/s)"
    )
    if result.skipped_existing:
        summary += f"; {result.skipped_existing} already complete"
    if result.skipped:
        summary += f"; skipped {len(result.skipped)} non-regular or out-of-tree entries"
    click.echo(summary, err=True)
    if benchmark_out:
        record: dict[str, Any] = {
            "operation": kind,
            "uri": uri,
            **result.as_dict(),
            "files_per_second": result.files / secs,
            "bytes_per_second": result.bytes_sent / secs,
        }
        Path(benchmark_out).write_text(json.dumps(record, indent=2) + "\n")


def _transfer_options(func: Any) -> Any:
    func = click.option("--no-progress", is_flag=True, help="Do not draw the progress bar.")(func)
    func = click.option(
        "--benchmark-out",
        "-b",
        type=click.Path(dir_okay=False),
        help="Write the transfer's figures (files, bytes, seconds, throughput) to this JSON file.",
    )(func)
    func = click.option(
        "--threads",
        "-T",
        type=int,
        default=64,
        show_default=True,
        help="Requests in flight at once (files and parts).",
    )(func)
    func = click.option(
        "--processes",
        "-p",
        type=int,
        default=1,
        show_default=True,
        help="Worker processes to split the files over.",
    )(func)
    func = click.option(
        "--regex", "-x", help="Only paths (relative to the source) matching this Python regex."
    )(func)
    return func


@data.command()
@click.argument("uri")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@_transfer_options
def upload(
    uri: str,
    paths: tuple[str, ...],
    regex: str | None,
    processes: int,
    threads: int,
    benchmark_out: str | None,
    no_progress: bool,
) -> None:
    """Upload local PATHS to URI.

    A file goes to URI/NAME, a folder to URI/FOLDER/...; a folder given with a trailing '/'
    puts its contents directly below URI. An interrupted upload of large files resumes where it
    stopped when run again (parts the bucket already holds are not sent again).
    """
    bar = ProgressBar("upload", sys.stderr.isatty() and not no_progress)
    with _storage_errors():
        store = _open(uri)
        try:
            result = store.upload(list(paths), uri, _options(regex, processes, threads, False, bar))
        finally:
            bar.close()
    _report("upload", uri, result, benchmark_out)
    _exit_now(0)


@data.command()
@click.argument("uri")
@click.argument("path", type=click.Path(file_okay=False))
@click.option(
    "--resume",
    "-r",
    is_flag=True,
    help="Skip files already complete and fetch only the missing ranges of partial ones.",
)
@_transfer_options
def download(
    uri: str,
    path: str,
    resume: bool,
    regex: str | None,
    processes: int,
    threads: int,
    benchmark_out: str | None,
    no_progress: bool,
) -> None:
    """Download everything below URI (or the one object it names) into folder PATH."""
    bar = ProgressBar("download", sys.stderr.isatty() and not no_progress)
    with _storage_errors():
        store = _open(uri)
        try:
            result = store.download(uri, path, _options(regex, processes, threads, resume, bar))
        finally:
            bar.close()
    _report("download", uri, result, benchmark_out)
    _exit_now(0)


@data.command(name="list")
@click.argument("uri")
@click.argument("outfile", required=False, type=click.Path(dir_okay=False))
@click.option("--regex", "-x", help="Only keys (relative to URI) matching this Python regex.")
@click.option("--prefix", "-p", default="", help="Only keys (relative to URI) with this prefix.")
@click.option("--recursive", "-r", is_flag=True, help="Everything below URI, not just its level.")
@click.option("--no-pager", is_flag=True, help="Accepted for compatibility; output is not paged.")
@format_option
def list_(
    uri: str,
    outfile: str | None,
    regex: str | None,
    prefix: str,
    recursive: bool,
    no_pager: bool,
    format_type: str,
) -> None:
    """List the objects below URI (one level, or all with --recursive)."""
    with _storage_errors():
        store = _open(uri)
        infos = [
            i
            for i in store.list_objects(uri, recursive=recursive, regex=regex)
            if i.key.startswith(prefix)
        ]
    if outfile:
        Path(outfile).write_text("".join(f"{i.key}\n" for i in infos))
        click.echo(f"{len(infos)} entries written to {outfile}", err=True)
        _exit_now(0)
        return
    if format_type == "json":
        echo_json(
            [
                {
                    "key": i.key,
                    "size": i.size,
                    "last_modified": i.last_modified.isoformat() if i.last_modified else None,
                }
                for i in infos
            ]
        )
        _exit_now(0)
        return
    rows = [
        (
            i.last_modified.strftime("%Y-%m-%d %H:%M:%S") if i.last_modified else "",
            "DIR" if i.key.endswith("/") else i.size,
            i.key,
        )
        for i in infos
    ]
    if rows:
        click.echo(table(["LAST MODIFIED", "SIZE", "KEY"], rows))
    _exit_now(0)


@data.command()
@click.argument("uri")
@click.option("--regex", "-x", help="Only keys (relative to URI) matching this Python regex.")
def delete(uri: str, regex: str | None) -> None:
    """Delete the objects below URI (or the one object it names)."""
    with _storage_errors():
        n = _open(uri).delete(uri, regex)
    click.echo(f"deleted {n} objects", err=True)
    _exit_now(0)


@data.command()
@click.argument("uri")
@click.option(
    "--access-type",
    "-a",
    type=click.Choice(["READ", "WRITE", "DELETE"], case_sensitive=False),
    default="READ",
    show_default=True,
    help="The permission to verify.",
)
@click.option(
    "--config-file",
    "-c",
    type=click.Path(dir_okay=False, exists=True),
    help="Take the DATA credentials from this client config file instead.",
)
def check(uri: str, access_type: str, config_file: str | None) -> None:
    """Verify that the credentials for URI allow ACCESS-TYPE there."""
    access = access_type.upper()
    with _storage_errors():
        _open(uri, config_file).check(uri, access)  # type: ignore[arg-type]
    click.echo(f"{access} access to {uri}: ok")
    _exit_now(0)
