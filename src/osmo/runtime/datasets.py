"""Moving dataset versions between a folder and a dataset bucket (content-addressed objects).

Shared by ``osmo dataset upload|download`` and the task runtime. Objects live at
``<bucket>/objects/<sha[:2]>/<sha>``; a file is uploaded only when its content is not in the
bucket yet, so a new version that changes 1% of the files moves about 1% of the bytes.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Entry = tuple[str, int, str]  # (relative path, size, sha256)
THREADS = 8


class DatasetError(Exception):
    pass


def object_url(bucket: str, sha: str) -> str:
    return f"{bucket.rstrip('/')}/objects/{sha[:2]}/{sha}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def collect(paths: Sequence[str | Path], regex: str | None = None) -> dict[str, Path]:
    """Relative dataset path → local file. A folder contributes ``<name>/...``; with a trailing
    ``/`` its contents go directly at the top (as with ``osmo data upload``)."""
    pattern = re.compile(regex) if regex else None
    out: dict[str, Path] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DatasetError(f"{raw}: no such file or folder")
        if p.is_file():
            items = [(p.name, p)]
        else:
            base = "" if str(raw).endswith("/") else p.name
            items = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for fname in sorted(files):
                    f = Path(root) / fname
                    if f.is_symlink() or not f.is_file():
                        continue
                    rel = f.relative_to(p).as_posix()
                    items.append((posixpath.join(base, rel) if base else rel, f))
        for rel, f in items:
            if pattern is not None and not pattern.search(rel):
                continue
            if rel in out:
                raise DatasetError(f"two files map to {rel!r} in the dataset")
            out[rel] = f
    return out


def manifest_of(files: dict[str, Path], threads: int = THREADS) -> list[Entry]:
    names = sorted(files)
    with ThreadPoolExecutor(threads) as pool:
        hashes = list(pool.map(lambda n: sha256_file(files[n]), names))
    return [(n, files[n].stat().st_size, h) for n, h in zip(names, hashes, strict=True)]


def upload_objects(
    store: Any, bucket: str, files: dict[str, Path], manifest: list[Entry], missing: Iterable[str]
) -> tuple[int, int]:
    """Upload the contents whose hash is in ``missing``; returns (files, bytes) sent."""
    wanted = set(missing)
    by_sha: dict[str, Path] = {}
    for path, _, sha in manifest:
        if sha in wanted and sha not in by_sha:
            by_sha[sha] = files[path]
    if not by_sha:
        return 0, 0
    with tempfile.TemporaryDirectory(prefix="osmo-dataset-") as tmp:
        root = Path(tmp)
        for sha, src in by_sha.items():
            dest = root / sha[:2] / sha
            dest.parent.mkdir(exist_ok=True)
            try:
                os.link(src, dest)  # no copy when on the same filesystem
            except OSError:
                shutil.copyfile(src, dest)
        store.upload_dir(root, f"{bucket.rstrip('/')}/objects")
    return len(by_sha), sum(p.stat().st_size for p in by_sha.values())


@dataclass
class Fetched:
    files: int = 0
    bytes: int = 0
    skipped: int = 0


def safe_join(dest: Path, rel: str) -> Path:
    norm = posixpath.normpath(rel)
    if rel.startswith("/") or norm == ".." or norm.startswith("../") or norm in ("", "."):
        raise DatasetError(f"manifest path {rel!r} escapes the destination")
    return dest / norm


def download_version(
    store: Any,
    bucket: str,
    manifest: Sequence[Sequence[Any]],
    dest: Path,
    regex: str | None = None,
    threads: int = THREADS,
    progress: Callable[[int], None] | None = None,
) -> Fetched:
    """Materialize a version under ``dest``; files already there with the right hash are kept
    (so an interrupted download resumes), every fetched file's sha256 is verified."""
    pattern = re.compile(regex) if regex else None
    todo: list[tuple[Path, int, str]] = []
    result = Fetched()
    for entry in manifest:
        rel, size, sha = str(entry[0]), int(entry[1]), str(entry[2])
        if pattern is not None and not pattern.search(rel):
            continue
        target = safe_join(dest, rel)
        if target.is_file() and target.stat().st_size == size and sha256_file(target) == sha:
            result.skipped += 1
            continue
        todo.append((target, size, sha))

    def fetch(item: tuple[Path, int, str]) -> int:
        target, size, sha = item
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.osmo-part")
        h = hashlib.sha256()
        with open(tmp, "wb") as f:
            for chunk in store.stream(object_url(bucket, sha)):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != sha:
            tmp.unlink(missing_ok=True)
            raise DatasetError(
                f"{target}: content does not match its manifest hash (object changed or corrupt)"
            )
        os.replace(tmp, target)
        if progress is not None:
            progress(size)
        return size

    with ThreadPoolExecutor(threads) as pool:
        for size in pool.map(fetch, todo):
            result.files += 1
            result.bytes += size
    return result


def existing_objects(store: Any, bucket: str, hashes: Iterable[str]) -> set[str]:
    """Which contents are already in the bucket (one lookup per distinct hash)."""
    found = set()
    for sha in set(hashes):
        try:
            if store.list(object_url(bucket, sha)):
                found.add(sha)
        except Exception:  # absent
            continue
    return found
