"""Finding the server and turning client errors into CLI errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..client import ApiError, ConnectionFailed, OsmoClient, load_profile
from .errors import CliError

T = TypeVar("T")

NO_SERVER = (
    "error: no osmo server configured. Start one with 'osmo standalone' (or 'make run'), then set "
    "OSMO_URL=http://127.0.0.1:8080 or run 'osmo login http://127.0.0.1:8080'."
)


def client() -> OsmoClient:
    profile = load_profile()
    if not profile.url:
        raise CliError(NO_SERVER)
    return OsmoClient(profile.url, user=profile.user)


def api_error_text(exc: ApiError, filename: str | None = None) -> str:
    if exc.errors and filename:
        lines = []
        for e in exc.errors:
            where = filename
            if e.get("line"):
                where += f":{e['line']}:{e.get('column') or 1}"
            lines.append(f"{where}: {e.get('message')}")
        return "\n".join(lines)
    if exc.errors:
        return "\n".join(f"error: {e.get('message')}" for e in exc.errors)
    return f"error: {exc.message}"


@contextmanager
def api(filename: str | None = None) -> Iterator[OsmoClient]:
    c = client()
    try:
        yield c
    except ApiError as exc:
        raise CliError(api_error_text(exc, filename)) from None
    except ConnectionFailed as exc:
        raise CliError(f"error: {exc}") from None
    finally:
        c.close()


def call(fn: Callable[[OsmoClient], T], filename: str | None = None) -> T:
    with api(filename) as c:
        return fn(c)
