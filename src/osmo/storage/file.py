"""``file://`` storage: a local (or network-mounted) folder addressed by an absolute path.

Copies go to a temporary name next to the target and are renamed into place, so a reader never
sees a half-written file. Symlinks are never followed out of the tree being copied: a task could
otherwise point its output at host files that the (unsandboxed) uploader would then publish.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import (
    AccessDeniedError,
    AccessType,
    NotFoundError,
    ObjectInfo,
    StorageError,
    Store,
    TransferOptions,
    TransferResult,
    check_key,
    compile_regex,
)


def file_url_path(url: str) -> Path:
    """The absolute local path of a ``file://`` URL (``file:///abs`` or ``file://localhost/abs``)."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise StorageError(f"not a file:// URL: {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise StorageError(f"file:// URL {url!r} names host {parts.netloc!r}; only local paths")
    if parts.query or parts.fragment:
        raise StorageError(f"file:// URL {url!r} must not have a query or fragment")
    raw = unquote(parts.path)
    if not raw.startswith("/"):
        raise StorageError(f"file:// URL {url!r} must hold an absolute path (file:///abs/path)")
    if ".." in raw.split("/"):
        raise StorageError(f"file:// URL {url!r} must not contain '..'")
    return Path(os.path.normpath(raw))


def walk_tree(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Regular files below ``root`` as (relative key, real path), plus skipped entries.

    A symlink is copied as the file it points to only when that file lies inside ``root``;
    symlinked directories are not descended into (no cycles, no escapes).
    """
    real_root = os.path.realpath(root)
    files: list[tuple[str, Path]] = []
    skipped: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel_dir)))
        except OSError as e:
            raise StorageError(f"cannot read {os.path.join(root, rel_dir)}: {e}") from e
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                inside = target.startswith(real_root + os.sep)
                if inside and os.path.isfile(target):
                    files.append((rel, Path(target)))
                else:
                    skipped.append(rel)
            elif entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif entry.is_file(follow_symlinks=False):
                files.append((rel, Path(entry.path)))
            else:
                skipped.append(rel)  # sockets, fifos, devices: not storable objects
    files.sort()
    return files, skipped


def _copy_into(src: Path, dest: Path) -> int:
    """Copy one file to ``dest`` through a temporary sibling and a rename; returns its size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.osmo-tmp-{uuid.uuid4().hex[:12]}"
    try:
        shutil.copyfile(src, tmp)  # sendfile()/copy_file_range() on Linux
        mode = stat.S_IMODE(os.stat(src).st_mode)
        os.chmod(tmp, mode | stat.S_IRUSR | stat.S_IWUSR)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest.stat().st_size


class FileStore(Store):
    scheme = "file"

    def upload_dir(
        self, local_dir: str | Path, url: str, regex: str | None = None
    ) -> TransferResult:
        src = Path(local_dir)
        dest = file_url_path(url)
        pattern = compile_regex(regex)
        if not src.is_dir():
            raise StorageError(f"upload source {src} is not a directory")
        result = TransferResult()
        try:
            files, result.skipped = walk_tree(src)
            # The prefix exists even for an empty upload, so a downstream download finds it.
            dest.mkdir(parents=True, exist_ok=True)
            for key, path in files:
                if pattern is not None and not pattern.search(key):
                    continue
                result.bytes += _copy_into(path, dest / check_key(key))
                result.files += 1
        except StorageError:
            raise
        except OSError as e:
            raise StorageError(f"upload of {src} to {url} failed: {e}") from e
        return result

    def download_dir(
        self, url: str, local_dir: str | Path, regex: str | None = None
    ) -> TransferResult:
        src = file_url_path(url)
        dest = Path(local_dir)
        pattern = compile_regex(regex)
        result = TransferResult()
        try:
            if src.is_file():
                # A URL naming a single object downloads that object into the folder.
                files: list[tuple[str, Path]] = [(src.name, src)]
                skipped: list[str] = []
            elif src.is_dir():
                files, skipped = walk_tree(src)
            else:
                raise NotFoundError(f"download source {url} does not exist")
            result.skipped = skipped
            dest.mkdir(parents=True, exist_ok=True)
            for key, path in files:
                if pattern is not None and not pattern.search(key):
                    continue
                result.bytes += _copy_into(path, dest / check_key(key))
                result.files += 1
        except StorageError:
            raise
        except OSError as e:
            raise StorageError(f"download of {url} to {dest} failed: {e}") from e
        return result

    def list(self, url: str) -> list[ObjectInfo]:
        src = file_url_path(url)
        try:
            if src.is_file():
                return [ObjectInfo(src.name, src.stat().st_size)]
            if not src.is_dir():
                raise NotFoundError(f"{url} does not exist")
            files, _ = walk_tree(src)
            return [ObjectInfo(key, path.stat().st_size) for key, path in files]
        except StorageError:
            raise
        except OSError as e:
            raise StorageError(f"listing {url} failed: {e}") from e

    # Extended interface ---------------------------------------------------------------------

    def upload(
        self, paths: Sequence[str | Path], url: str, options: TransferOptions | None = None
    ) -> TransferResult:
        options = options or TransferOptions()
        total = TransferResult()
        dest = file_url_path(url)
        for raw in paths:
            p = Path(raw)
            if p.is_dir():
                target = dest if str(raw).endswith("/") else dest / p.resolve().name
                r = self.upload_dir(p, target.as_uri(), options.regex)
            elif p.is_file():
                pattern = compile_regex(options.regex)
                r = TransferResult()
                if pattern is None or pattern.search(p.name):
                    try:
                        r.bytes = _copy_into(p, dest / p.name)
                    except OSError as e:
                        raise StorageError(f"upload of {p} to {url} failed: {e}") from e
                    r.files = 1
            else:
                raise StorageError(f"upload source {raw} does not exist")
            total.files += r.files
            total.bytes += r.bytes
            total.skipped += r.skipped
        total.bytes_sent = total.bytes
        return total

    def download(
        self, url: str, local_dir: str | Path, options: TransferOptions | None = None
    ) -> TransferResult:
        options = options or TransferOptions()
        if not options.resume:
            r = self.download_dir(url, local_dir, options.regex)
            r.bytes_sent = r.bytes
            return r
        # Resume: copy only what is missing or of another size.
        src = file_url_path(url)
        pattern = compile_regex(options.regex)
        dest = Path(local_dir)
        result = TransferResult()
        for info in self.list(url):
            if pattern is not None and not pattern.search(info.key):
                continue
            target = dest / check_key(info.key)
            path = src if src.is_file() else src / info.key
            result.files += 1
            result.bytes += info.size
            if target.is_file() and target.stat().st_size == info.size:
                result.skipped_existing += 1
                continue
            try:
                _copy_into(path, target)
            except OSError as e:
                raise StorageError(f"download of {url} to {dest} failed: {e}") from e
            result.bytes_sent += info.size
        return result

    def list_objects(
        self, url: str, *, recursive: bool = True, regex: str | None = None
    ) -> Iterator[ObjectInfo]:
        pattern = compile_regex(regex)
        src = file_url_path(url)
        if not src.exists():
            return  # like a prefix with no objects below it
        if recursive or src.is_file():
            infos = self.list(url)
        else:
            if not src.is_dir():
                raise NotFoundError(f"{url} does not exist")
            infos = []
            for entry in sorted(os.scandir(src), key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False):
                    infos.append(ObjectInfo(entry.name + "/", 0))
                elif entry.is_file(follow_symlinks=False):
                    infos.append(ObjectInfo(entry.name, entry.stat().st_size))
        for info in infos:
            if pattern is None or pattern.search(info.key):
                yield info

    def delete(self, url: str, regex: str | None = None) -> int:
        src = file_url_path(url)
        pattern = compile_regex(regex)
        n = 0
        try:
            if src.is_file():
                src.unlink()
                return 1
            for info in self.list(url):
                if pattern is None or pattern.search(info.key):
                    (src / info.key).unlink()
                    n += 1
            if pattern is None:
                shutil.rmtree(src, ignore_errors=True)
        except OSError as e:
            raise StorageError(f"delete of {url} failed: {e}") from e
        return n

    def check(self, url: str, access: AccessType = "READ") -> None:
        path = file_url_path(url)
        probe = path if path.is_dir() else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        mode = {"READ": os.R_OK, "WRITE": os.W_OK, "DELETE": os.W_OK}.get(access)
        if mode is None:
            raise StorageError(f"unknown access type {access!r}: READ, WRITE or DELETE")
        if not os.access(probe, mode | os.X_OK):
            raise AccessDeniedError(f"access denied: {access} on {url} ({probe})")

    def read_bytes(self, url: str) -> bytes:
        path = file_url_path(url)
        try:
            return path.read_bytes()
        except FileNotFoundError as e:
            raise NotFoundError(f"{url} does not exist") from e
        except OSError as e:
            raise StorageError(f"reading {url} failed: {e}") from e

    def write_bytes(self, url: str, data: bytes) -> None:
        path = file_url_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.osmo-tmp-{uuid.uuid4().hex[:12]}"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"writing {url} failed: {e}") from e

    def stream(self, url: str, start: int = 0, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        path = file_url_path(url)
        try:
            f = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError as e:
            raise NotFoundError(f"{url} does not exist") from e
        except OSError as e:
            raise StorageError(f"reading {url} failed: {e}") from e
        with f:
            f.seek(start)
            while True:
                chunk = f.read(chunk_size)
                if not chunk:
                    return
                yield chunk
