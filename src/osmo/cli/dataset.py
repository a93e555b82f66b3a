"""``osmo dataset``: versioned, content-addressed datasets (files go client ↔ bucket directly)."""

from __future__ import annotations

import click

from .connect import api
from .errors import CliError, key_values
from .output import echo_json, format_option, table


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def _store(bucket: str):  # type: ignore[no-untyped-def]
    from ..storage import open_store

    return open_store(bucket)


@click.group()
def dataset() -> None:
    """Versioned datasets: upload, download, list, info, tag, label, delete, query."""


@dataset.command(name="upload")
@click.argument("ref", metavar="NAME[:TAG]")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--regex", "-x", help="Only files whose dataset path matches.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Recorded on the new version.")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Set on the dataset.")
@format_option
def dataset_upload(
    ref: str,
    paths: tuple[str, ...],
    regex: str | None,
    metadata: tuple[str, ...],
    label: tuple[str, ...],
    format_type: str,
) -> None:
    """Create a new version of dataset NAME from PATHS (unchanged files are not uploaded again)."""
    from ..runtime.datasets import DatasetError, collect, manifest_of, upload_objects

    name, _, tag = ref.partition(":")
    if tag.isdigit():
        raise CliError("error: versions are numbered by the server; give a tag (NAME:TAG) or none")
    try:
        files = collect(paths, regex)
    except DatasetError as exc:
        raise CliError(f"error: {exc}") from None
    if not files:
        raise CliError("error: no files to upload" + (f" matching {regex!r}" if regex else ""))
    manifest = manifest_of(files)
    with api() as c:
        answer = c.dataset_missing(name, [sha for _, _, sha in manifest])
        bucket = answer["bucket"]
        try:
            sent_files, sent_bytes = upload_objects(
                _store(bucket), bucket, files, manifest, answer["missing"]
            )
        except Exception as exc:
            raise CliError(f"error: upload to {bucket} failed: {exc}") from None
        result = c.dataset_commit(
            name,
            [list(e) for e in manifest],
            tag or None,
            key_values(metadata, "--metadata"),
            key_values(label, "--label"),
        )
    result.update(
        uploaded_files=sent_files,
        uploaded_bytes=sent_bytes,
        total_bytes=sum(s for _, s, _ in manifest),
    )
    if format_type == "json":
        echo_json(result)
        return
    click.echo(
        f"dataset {name} version {result['version']}: {result['files']} files, {_size(result['size'])}; "
        f"uploaded {sent_files} new file(s), {_size(sent_bytes)}"
        + (f"; tagged {tag}" if tag else "")
    )


@dataset.command(name="download")
@click.argument("ref", metavar="NAME[:VERSION|TAG]")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--regex", "-x", help="Only files whose dataset path matches.")
def dataset_download(ref: str, dest: str, regex: str | None) -> None:
    """Download a version (latest by default) into DEST; re-running resumes."""
    from pathlib import Path

    from ..runtime.datasets import DatasetError, download_version

    name, _, version = ref.partition(":")
    with api() as c:
        m = c.dataset_manifest(name, version or None)
    try:
        got = download_version(_store(m["bucket"]), m["bucket"], m["manifest"], Path(dest), regex)
    except DatasetError as exc:
        raise CliError(f"error: {exc}") from None
    except Exception as exc:
        raise CliError(f"error: download from {m['bucket']} failed: {exc}") from None
    click.echo(
        f"dataset {name} version {m['version']}: {got.files} file(s), {_size(got.bytes)} downloaded, {got.skipped} already present"
    )


@dataset.command(name="list")
@click.option("--name", "-n", help="Name contains.")
@format_option
def dataset_list(name: str | None, format_type: str) -> None:
    """Datasets with their latest version."""
    with api() as c:
        result = c.datasets(name=name)
    if format_type == "json":
        echo_json(result)
        return
    rows = [
        [
            d["name"],
            d["latest_version"],
            d["files"],
            _size(d["size"]),
            ",".join(f"{k}={v}" for k, v in d["labels"].items()),
        ]
        for d in result["datasets"]
    ]
    click.echo(table(["DATASET", "LATEST", "FILES", "SIZE", "LABELS"], rows))


@dataset.command(name="query")
@click.option(
    "--label",
    "-l",
    multiple=True,
    metavar="KEY=VALUE",
    required=True,
    help="Datasets with this label (ANDed).",
)
@format_option
def dataset_query(label: tuple[str, ...], format_type: str) -> None:
    """Datasets whose labels match."""
    with api() as c:
        result = c.datasets(labels=list(label))
    if format_type == "json":
        echo_json(result)
        return
    for d in result["datasets"]:
        click.echo(d["name"])


@dataset.command(name="info")
@click.argument("name")
@format_option
def dataset_info(name: str, format_type: str) -> None:
    """Versions (files, size, tags, metadata) and labels of a dataset."""
    with api() as c:
        info = c.dataset(name)
    if format_type == "json":
        echo_json(info)
        return
    click.echo(
        f"Dataset : {info['name']}\nBucket  : {info['bucket']}\nLabels  : {', '.join(f'{k}={v}' for k, v in info['labels'].items())}"
    )
    rows = [
        [
            v["version"],
            v["files"],
            _size(v["size"]),
            ",".join(v["tags"]),
            v["created_by"],
            v["created_at"],
            v.get("source") or "",
        ]
        for v in info["versions"]
    ]
    click.echo(table(["VERSION", "FILES", "SIZE", "TAGS", "BY", "CREATED", "SOURCE"], rows))


@dataset.command(name="tag")
@click.argument("ref", metavar="NAME:VERSION")
@click.argument("tag")
def dataset_tag(ref: str, tag: str) -> None:
    """Point TAG at a version (tags move; versions never change)."""
    name, _, version = ref.partition(":")
    if not version.isdigit():
        raise CliError("error: give the version as NAME:VERSION (a number)")
    with api() as c:
        c.dataset_tag(name, tag, int(version))
    click.echo(f"{name}:{tag} -> version {version}")


@dataset.command(name="label")
@click.argument("name")
@click.option("--set", "set_", multiple=True, metavar="KEY=VALUE")
@click.option("--delete", multiple=True, metavar="KEY")
def dataset_label(name: str, set_: tuple[str, ...], delete: tuple[str, ...]) -> None:
    """Set or remove labels of a dataset."""
    with api() as c:
        result = c.dataset_label(name, key_values(set_, "--set"), list(delete))
    click.echo(
        f"{name}: " + (", ".join(f"{k}={v}" for k, v in result["labels"].items()) or "no labels")
    )


@dataset.command(name="delete")
@click.argument("ref", metavar="NAME[:VERSION]")
def dataset_delete(ref: str) -> None:
    """Delete one version, or the whole dataset."""
    name, _, version = ref.partition(":")
    if version and not version.isdigit():
        raise CliError("error: delete a version by number (NAME:VERSION)")
    with api() as c:
        result = c.dataset_delete(name, int(version) if version else None)
    click.echo(f"deleted {result['deleted_versions']} version(s) of {name}")
