"""``osmo data`` through the installed console script, against SeaweedFS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from storage_helpers import Remote, make_remote, make_tree, read_tree

from osmo.storage import Credentials, save_local_credential

pytestmark = pytest.mark.integration
OSMO = str(Path(sys.executable).parent / "osmo")


@pytest.fixture
def s3(tmp_path: Path) -> Remote:
    return make_remote("seaweedfs", tmp_path)


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OSMO_URL"))}
    full.update(OSMO_HOME=str(home), **(env or {}))
    return subprocess.run(
        [OSMO, "data", *args], capture_output=True, text=True, env=full, timeout=120
    )


def test_missing_credentials_bad_url_and_missing_bucket(s3: Remote, tmp_path: Path) -> None:
    home = Path(os.environ["OSMO_HOME"])
    r = run(home, "list", s3.url())
    assert r.returncode == 1
    assert "no credentials for " + s3.root in r.stderr
    assert "osmo credential set" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(home, "list", "s3://Not_A_Bucket!/x")
    assert r.returncode == 1 and "bucket 'Not_A_Bucket!'" in r.stderr
    r = run(home, "list", "ftp://host/x")
    assert r.returncode == 1 and "unknown storage scheme 'ftp'" in r.stderr
    assert s3.credentials is not None
    save_local_credential("all", s3.credentials.model_copy(update={"endpoint": "s3://osmo-nope"}))
    r = run(home, "download", "s3://osmo-nope/x", str(tmp_path / "dl"))
    assert r.returncode == 1 and "bucket 'osmo-nope' does not exist" in r.stderr, r.stderr


def test_upload_list_download_delete_check(s3: Remote, tmp_path: Path) -> None:
    home = Path(os.environ["OSMO_HOME"])
    assert s3.credentials is not None
    path = save_local_credential("mine", s3.credentials.model_copy(update={"endpoint": s3.root}))
    assert path == home / "client.yaml"
    assert (path.stat().st_mode & 0o777) == 0o600
    files = {"a.txt": b"a", "logs/x.log": b"xx", "logs/y.log": b"yyy", "m/n.csv": b"1,2"}
    src = make_tree(tmp_path / "src", files)
    bench = tmp_path / "bench.json"
    r = run(
        home,
        "upload",
        s3.url("d"),
        str(src) + "/",
        "-x",
        r"\.(txt|log)$",
        "-T",
        "4",
        "-b",
        str(bench),
    )
    assert r.returncode == 0, r.stderr
    assert "upload: 3 files" in r.stderr
    figures = json.loads(bench.read_text())
    assert figures["files"] == 3 and figures["bytes"] == 6 and figures["bytes_per_second"] > 0

    r = run(home, "list", s3.url("d"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["LAST", "MODIFIED", "SIZE", "KEY"]
    assert [ln.split()[-1] for ln in lines[2:]] == ["a.txt", "logs/"]
    r = run(home, "list", s3.url("d"), "-r", "-t", "json", "--prefix", "logs/")
    assert [(e["key"], e["size"]) for e in json.loads(r.stdout)] == [
        ("logs/x.log", 2),
        ("logs/y.log", 3),
    ]
    out = tmp_path / "keys.txt"
    assert run(home, "list", s3.url("d"), str(out), "-r", "-x", "y").returncode == 0
    assert out.read_text() == "logs/y.log\n"

    dl = tmp_path / "dl"
    r = run(home, "download", s3.url("d"), str(dl), "--regex", "^logs/")
    assert r.returncode == 0, r.stderr
    assert read_tree(dl) == {"logs/x.log": b"xx", "logs/y.log": b"yyy"}
    r = run(home, "download", s3.url("d"), str(dl), "-r")
    assert r.returncode == 0 and "2 already complete" in r.stderr, r.stderr

    for access in ("READ", "WRITE", "DELETE"):
        r = run(home, "check", s3.url("d"), "-a", access)
        assert r.returncode == 0 and f"{access} access" in r.stdout, r.stderr
    r = run(home, "delete", s3.url("d"), "--regex", "log$")
    assert r.returncode == 0 and "deleted 2 objects" in r.stderr
    r = run(home, "list", s3.url("d"), "-r", "-t", "json")
    assert [e["key"] for e in json.loads(r.stdout)] == ["a.txt"]


def test_access_denied_is_clear(s3: Remote, tmp_path: Path) -> None:
    home = Path(os.environ["OSMO_HOME"])
    assert s3.reader_credentials is not None and s3.bad_credentials is not None
    save_local_credential("reader", s3.reader_credentials.model_copy(update={"endpoint": s3.root}))
    assert run(home, "check", s3.url(), "-a", "READ").returncode == 0
    r = run(home, "check", s3.url(), "-a", "WRITE")
    assert r.returncode == 1 and "access denied" in r.stderr, r.stderr
    src = make_tree(tmp_path / "src", {"a": b"a"})
    r = run(home, "upload", s3.url("x"), str(src / "a"))
    assert r.returncode == 1 and "access denied" in r.stderr
    other = tmp_path / "other.yaml"
    save_local_credential(
        "bad", s3.bad_credentials.model_copy(update={"endpoint": s3.root}), path=other
    )
    r = run(home, "check", s3.url(), "-c", str(other))
    assert r.returncode == 1 and "rejected the credential" in r.stderr, r.stderr


def test_environment_credentials(s3: Remote, tmp_path: Path) -> None:
    assert s3.credentials is not None and s3.credentials.override_url
    env = {
        "AWS_ACCESS_KEY_ID": s3.credentials.access_key_id or "",
        "AWS_SECRET_ACCESS_KEY": s3.credentials.access_key or "",
        "AWS_ENDPOINT_URL": s3.credentials.override_url,
    }
    src = make_tree(tmp_path / "src", {"e.txt": b"env"})
    r = run(Path(os.environ["OSMO_HOME"]), "upload", s3.url("env"), str(src / "e.txt"), env=env)
    assert r.returncode == 0, r.stderr
    r = run(Path(os.environ["OSMO_HOME"]), "list", s3.url("env"), "-t", "json", env=env)
    assert [e["key"] for e in json.loads(r.stdout)] == ["e.txt"]


def test_cli_local_credential_wins_over_environment(s3: Remote, tmp_path: Path) -> None:
    home = Path(os.environ["OSMO_HOME"])
    assert s3.credentials is not None
    save_local_credential("mine", s3.credentials.model_copy(update={"endpoint": s3.root}))
    env = {"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "nothing"}
    assert run(home, "check", s3.url(), env=env).returncode == 0
    wrong = Credentials(
        access_key_id="nobody", access_key="nothing", override_url=s3.credentials.override_url
    )
    save_local_credential("mine", wrong.model_copy(update={"endpoint": s3.root}))
    assert run(home, "check", s3.url()).returncode == 1
