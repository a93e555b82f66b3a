"""The user-facing surface of the installed ``osmo`` CLI against a real ``osmo standalone``
(SQLite and PostgreSQL): workflow logs (follow, tail, per task, errors), list filters and
pagination, submit flags, query, events, spec, version, login/logout, and the REST API's OpenAPI
document and spec errors.

Bad input must end with exit code 1 and one ``error: ...`` message on stderr (2 with click's usage
message for a malformed flag), never a traceback (``Platform.osmo`` asserts that for every call).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .platform import OSMO, Platform, task, tasks_of

pytestmark = pytest.mark.e2e


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def unique(prefix: str) -> str:
    """A workflow name no other test of the module (or earlier run on the same database) uses."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def fails(p: Platform, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a command that must be refused: exit 1, nothing on stdout, ``error: ...`` on stderr."""
    result = run(*args, env=env) if env is not None else p.osmo(*args, check=False)
    assert result.returncode == 1, (args, result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    return message


def run(*args: str, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess[str]:
    """``osmo`` with an environment of the test's choosing (another user, another OSMO_HOME)."""
    result = subprocess.run([OSMO, *args], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def listed(p: Platform, *args: str) -> dict[str, Any]:
    return dict(json.loads(p.osmo("workflow", "list", "-t", "json", *args).stdout))


def ids(p: Platform, *args: str) -> list[str]:
    return [w["id"] for w in listed(p, *args)["workflows"]]


def listed_pools(p: Platform) -> list[dict[str, Any]]:
    return list(json.loads(p.osmo("pool", "list", "-t", "json").stdout)["pools"])


def rows(text: str) -> list[list[str]]:
    """Rows of a CLI table: the lines after the ``----`` rule, split on runs of spaces."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    return [line.split() for line in lines[rule + 1 :] if line.strip()]


# ---- logs -----------------------------------------------------------------------------------


class Follower:
    """``osmo workflow logs ... -f`` in the background, every line recorded with its arrival."""

    def __init__(self, platform: Platform, tmp_path: Path, *args: str):
        self.stderr = tmp_path / f"follow-{uuid.uuid4().hex[:6]}.err"
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                [OSMO, "workflow", "logs", *args, "-f"],
                env=platform.env(),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: list[tuple[str, float]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append((line.rstrip("\n"), time.time()))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        with self._changed:
            ok = self._changed.wait_for(lambda: any(t == text for t, _ in self.lines), timeout)
        assert ok, f"{text!r} never arrived; got {self.lines}"

    def finish(self, timeout: float = 60) -> list[str]:
        """Wait for the command to return by itself; its lines."""
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        assert rc == 0, self.stderr.read_text()
        assert self.stderr.read_text() == ""
        return [t for t, _ in self.lines]

    def arrived(self, text: str) -> float:
        return next(at for t, at in self.lines if t == text)


def test_logs_follow_returns_when_workflow_finishes(platform: Platform, tmp_path: Path) -> None:
    name = unique("follow")
    gate = Path("/var/tmp") / f"osmo-e2e-gate-{uuid.uuid4().hex}"
    path = write(
        tmp_path,
        f"""
workflow:
  name: {name}
  tasks:
  - name: printer
    image: alpine
    command:
    - sh
    - -c
    - |
      echo line-1
      while [ ! -e {gate} ]; do sleep 0.1; done
      for i in 2 3 4 5 6; do echo line-$i; sleep 0.4; done
  - name: other
    image: alpine
    command: [sh, -c, "echo other-1"]
""",
    )
    expected = [f"line-{i}" for i in range(1, 7)]
    try:
        wf_id = platform.submit(path)
        # One follower from the start (the task may not even be running yet) ...
        early = Follower(platform, tmp_path, wf_id, "--task", "printer")
        early.wait_for("line-1")
        # ... and one that joins while the task is still printing (it waits on the gate).
        late = Follower(platform, tmp_path, wf_id)
        late.wait_for("[printer] line-1")
        late.wait_for("[other] other-1")
        assert platform.query(wf_id)["status"] == "RUNNING"
        gate.touch()
        # Both return by themselves when the workflow finishes, every line exactly once.
        assert early.finish() == expected
        everything = late.finish()
    finally:
        gate.touch()
        gate.unlink()
    assert [t for t in everything if t.startswith("[printer] ")] == [
        f"[printer] {x}" for x in expected
    ]
    assert sorted(everything) == sorted([f"[printer] {x}" for x in expected] + ["[other] other-1"])
    wf = platform.query(wf_id)
    assert wf["status"] == "COMPLETED"
    # Streamed as printed (2.0 s of sleeps between line-2 and the end), not in one piece.
    assert early.arrived("line-6") - early.arrived("line-2") > 1.0, early.lines

    assert platform.logs(wf_id, "-t", "printer", "-n", "2").splitlines() == ["line-5", "line-6"]
    assert platform.logs(wf_id, "-t", "printer", "-n", "99").splitlines() == expected
    assert platform.logs(wf_id, "-t", "other").splitlines() == ["other-1"]
    last = platform.logs(wf_id, "-n", "1").splitlines()
    assert sorted(last) == ["[other] other-1", "[printer] line-6"]
    # Following a finished workflow prints what there is and returns at once.
    started = time.monotonic()
    assert platform.logs(wf_id, "-t", "printer", "-f", "-n", "1").splitlines() == ["line-6"]
    assert platform.logs(wf_id, "-t", "printer", "-f").splitlines() == expected
    assert time.monotonic() - started < 15


MULTI = """
workflow:
  name: {name}
  tasks:
  - name: good
    image: alpine
    command: [sh, -c, "echo good-1; echo good-2"]
  - name: bad
    image: alpine
    command: [sh, -c, "echo bad-1; echo bad-stderr >&2; exit 3"]
"""


def test_logs_per_task_and_error_logs(platform: Platform, tmp_path: Path) -> None:
    name = unique("multi")
    wf_id = platform.submit(write(tmp_path, MULTI.format(name=name)))
    wf = platform.wait(wf_id)
    assert wf["status"] == "FAILED"
    assert (task(wf, "bad")["status"], task(wf, "bad")["exit_code"]) == ("FAILED", 3)

    everything = platform.logs(wf_id).splitlines()
    # Several tasks: each line says which task printed it.
    assert sorted(everything) == sorted(
        ["[good] good-1", "[good] good-2", "[bad] bad-1", "[bad] bad-stderr"]
    )
    assert everything.index("[good] good-1") < everything.index("[good] good-2")
    assert platform.logs(wf_id, "--task", "good").splitlines() == ["good-1", "good-2"]
    assert platform.logs(wf_id, "-t", "bad", "-n", "1").splitlines() == ["bad-stderr"]

    errors = platform.logs(wf_id, "--error")
    assert "[bad retry 0] FAILED exit code 3" in errors
    assert "bad-1" in errors and "bad-stderr" in errors
    assert "good" not in errors
    assert platform.logs(wf_id, "--error", "--task", "good") == ""

    message = fails(platform, "workflow", "logs", wf_id, "--task", "nope")
    assert "nope" in message and wf_id in message
    assert "nope" in fails(platform, "workflow", "logs", wf_id, "--task", "nope", "-f")
    assert "nope" in fails(platform, "workflow", "logs", wf_id, "--error", "--task", "nope")
    assert "retry 7" in fails(platform, "workflow", "logs", wf_id, "-t", "good", "-r", "7")
    assert "not found" in fails(platform, "workflow", "logs", f"{name}-99")
    usage = platform.osmo("workflow", "logs", wf_id, "-n", "0", check=False)
    assert usage.returncode == 2 and "-n" in usage.stderr


# ---- list -----------------------------------------------------------------------------------


def _submit_as(p: Platform, path: Path, user: str, *args: str) -> str:
    env = {**p.env(), "OSMO_USER": user}
    out = run("workflow", "submit", str(path), "-t", "json", *args, env=env, check=True)
    return str(json.loads(out.stdout)["id"])


def test_list_filters_and_pagination(platform: Platform, tmp_path: Path) -> None:
    if "side" not in {x["name"] for x in listed_pools(platform)}:
        platform.osmo("pool", "create", "side", "--backend", "local")
    base = unique("ls")
    spec = "workflow: {{name: {name}, tasks: [{{name: t, image: alpine, command: [sh, -c, '{cmd}']}}]}}"

    def make(suffix: str, cmd: str = "true") -> Path:
        return write(tmp_path, spec.format(name=f"{base}-{suffix}", cmd=cmd), f"{suffix}.yaml")

    ok = platform.submit(make("ok"), "--label", "team=alpha", "--label", "tier=gold")
    bad = platform.submit(make("bad", "exit 2"), "--label", "team=beta")
    alice = _submit_as(platform, make("alice"), "alice", "--label", "team=alto")
    side = platform.submit(make("side"), "--pool", "side")
    for wf_id in (ok, bad, alice, side):
        platform.wait(wf_id)
    me = platform.query(ok)["submitted_by"]
    assert me != "alice" and platform.query(alice)["submitted_by"] == "alice"
    assert platform.query(side)["pool"] == "side"

    newest_first = [side, alice, bad, ok]
    assert ids(platform, "--name", base) == newest_first
    assert ids(platform, "--name", base, "--order", "asc") == newest_first[::-1]
    assert ids(platform, "--name", f"{base}-ok") == [ok]
    assert ids(platform, "--name", f"{base}-*e") == [side, alice]  # glob in the name

    # Status
    assert ids(platform, "--name", base, "--status", "COMPLETED") == [side, alice, ok]
    assert ids(platform, "--name", base, "--status", "FAILED") == [bad]
    assert ids(platform, "--name", base, "-s", "failed", "-s", "COMPLETED") == newest_first
    assert ids(platform, "--name", base, "--status", "RUNNING") == []

    # Submitter and pool
    assert ids(platform, "--name", base, "--user", "alice") == [alice]
    assert ids(platform, "--name", base, "-u", me) == [side, bad, ok]
    assert ids(platform, "--name", base, "-u", me, "-u", "alice") == newest_first
    assert ids(platform, "--name", base, "--user", "nobody") == []
    assert ids(platform, "--name", base, "--pool", "side") == [side]
    assert ids(platform, "--name", base, "-p", "default") == [alice, bad, ok]

    # Labels: exact, glob, alternatives, AND across keys, absence.
    assert ids(platform, "--name", base, "--label", "team=alpha") == [ok]
    assert ids(platform, "--name", base, "--label", "team=al*") == [alice, ok]
    assert ids(platform, "--name", base, "--label", "team=(alpha|beta)") == [bad, ok]
    assert ids(platform, "--name", base, "--label", "team=(al*|zeta)") == [alice, ok]
    assert ids(platform, "--name", base, "--label", "team=al*", "--label", "tier=gold") == [ok]
    assert ids(platform, "--name", base, "--label", "team=alph") == []
    assert ids(platform, "--name", base, "--no-label", "team") == [side]
    assert ids(platform, "--name", base, "--no-label", "tier") == [side, alice, bad]
    assert listed(platform, "--name", f"{base}-ok")["workflows"][0]["labels"] == {
        "team": "alpha",
        "tier": "gold",
    }

    # Submission dates (days in UTC, the server's clock): [after, before).
    day = dt.date.fromisoformat(platform.query(ok)["submitted_at"][:10])
    today, tomorrow = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()
    assert ids(platform, "--name", base, "--submitted-after", today) == newest_first
    assert ids(platform, "--name", base, "--submitted-before", tomorrow) == newest_first
    assert (
        ids(platform, "--name", base, "--submitted-after", today, "--submitted-before", tomorrow)
        == newest_first
    )
    assert ids(platform, "--name", base, "--submitted-before", today) == []
    assert ids(platform, "--name", base, "--submitted-after", tomorrow) == []

    # Pagination: --count pages, --offset skips, "more" says whether another page exists.
    page = listed(platform, "--name", base, "--count", "3")
    assert [w["id"] for w in page["workflows"]] == newest_first[:3] and page["more"] is True
    page = listed(platform, "--name", base, "-c", "3", "--offset", "3")
    assert [w["id"] for w in page["workflows"]] == newest_first[3:] and page["more"] is False
    page = listed(platform, "--name", base, "-c", "4")
    assert len(page["workflows"]) == 4 and page["more"] is False
    page = listed(platform, "--name", base, "-c", "2", "-f", "1", "-o", "asc")
    assert [w["id"] for w in page["workflows"]] == [bad, alice] and page["more"] is True

    # Text output: one row per workflow, and a hint when there is more.
    text = platform.osmo("workflow", "list", "--name", base, "-c", "2").stdout
    assert [r[:5] for r in rows(text.split("(more")[0])] == [
        [side, "COMPLETED", "side", "NORMAL", me],
        [alice, "COMPLETED", "default", "NORMAL", "alice"],
    ]
    assert "--offset 2" in text
    assert "more" not in platform.osmo("workflow", "list", "--name", base, "-c", "4").stdout


def test_list_bad_filters(platform: Platform) -> None:
    message = fails(platform, "workflow", "list", "--status", "DONE")
    assert "DONE" in message and "COMPLETED" in message
    for flag in ("--submitted-after", "--submitted-before"):
        for value in ("2024-13-01", "yesterday", "04/01/2024"):
            message = fails(platform, "workflow", "list", flag, value)
            assert value in message and "YYYY-MM-DD" in message
    assert "KEY=VALUE" in fails(platform, "workflow", "list", "--label", "team")
    for args in (["--count", "0"], ["--offset", "-1"], ["--order", "sideways"]):
        usage = platform.osmo("workflow", "list", *args, check=False)
        assert usage.returncode == 2 and args[0] in usage.stderr, usage.stderr


# ---- submit ---------------------------------------------------------------------------------


def test_submit_flags(platform: Platform, tmp_path: Path) -> None:
    name = unique("flags")
    path = write(
        tmp_path,
        f"""
default-values:
  word: plain
workflow:
  name: {name}
  tasks:
  - name: show
    image: alpine
    environment: {{GREETING: from-spec, KEEP: kept}}
    command: [sh, -c, "echo G=$GREETING K=$KEEP X=$EXTRA W={{{{word}}}}"]
""",
    )
    wf_id = platform.submit(
        path,
        "--set-env",
        "GREETING=from-cli",
        "--set-env",
        "EXTRA=x=1",
        "--set",
        "word=fancy",
        "--label",
        "team=robots",
        "--label",
        "run=nightly",
        "--priority",
        "HIGH",
    )
    assert wf_id == f"{name}-1"
    wf = platform.wait(wf_id)
    assert wf["status"] == "COMPLETED", wf
    # --set-env overrides the spec's environment and adds to it; the value may contain '='.
    assert platform.logs(wf_id).strip() == "G=from-cli K=kept X=x=1 W=fancy"
    assert wf["labels"] == {"team": "robots", "run": "nightly"}
    assert wf["priority"] == "HIGH"
    assert listed(platform, "--name", name)["workflows"][0]["priority"] == "HIGH"
    assert ids(platform, "--name", name, "--priority", "HIGH") == [wf_id]
    assert ids(platform, "--name", name, "--priority", "LOW") == []

    # --dry-run prints the rendered spec and stores nothing.
    dry = platform.osmo("workflow", "submit", str(path), "--dry-run", "--set", "word=dry").stdout
    rendered = yaml.safe_load(dry)
    assert rendered["workflow"]["name"] == name
    assert "W=dry" in rendered["workflow"]["tasks"][0]["command"][2]
    assert "{{" not in dry
    assert ids(platform, "--name", name) == [wf_id]

    # Resubmitting by id: a new workflow with the same spec (rendered and template).
    out = platform.osmo("workflow", "submit", wf_id)
    second = f"{name}-2"
    assert second in out.stdout
    again = platform.wait(second)
    assert again["status"] == "COMPLETED"
    assert platform.osmo("workflow", "spec", second).stdout == (
        platform.osmo("workflow", "spec", wf_id).stdout
    )
    template = platform.osmo("workflow", "spec", second, "--template").stdout
    assert template == platform.osmo("workflow", "spec", wf_id, "--template").stdout
    assert "{{word}}" in template
    # The same rendered values (word=fancy); environment overrides are per submission.
    assert platform.logs(second).strip() == "G=from-spec K=kept X= W=fancy"
    assert ids(platform, "--name", name) == [second, wf_id]

    for flag in ("--set", "--set-string"):
        message = fails(platform, "workflow", "submit", wf_id, flag, "word=x")
        assert flag in message
    assert "--dry-run" in fails(platform, "workflow", "submit", wf_id, "--dry-run")
    assert "not found" in fails(platform, "workflow", "submit", f"{name}-42")
    assert "KEY=VALUE" in fails(platform, "workflow", "submit", str(path), "--set-env", "NOPE")
    assert "KEY=VALUE" in fails(platform, "workflow", "submit", str(path), "--label", "nope")
    missing = platform.osmo("workflow", "submit", str(tmp_path / "missing.yaml"), check=False)
    assert missing.returncode == 1 and missing.stderr.strip().endswith("missing.yaml: no such file")
    usage = platform.osmo("workflow", "submit", str(path), "--priority", "URGENT", check=False)
    assert usage.returncode == 2 and "--priority" in usage.stderr
    # None of the refused submissions stored anything.
    assert ids(platform, "--name", name) == [second, wf_id]


# ---- query, events, spec --------------------------------------------------------------------


def test_query_json_verbose_and_text(platform: Platform, tmp_path: Path) -> None:
    name = unique("query")
    path = write(
        tmp_path,
        f"""
workflow:
  name: {name}
  groups:
  - name: pair
    tasks:
    - name: lead
      lead: true
      image: alpine
      command: [sh, -c, "sleep 0.5"]
    - name: helper
      image: alpine
      command: [sh, -c, "true"]
  - name: retrying
    tasks:
    - name: flaky
      image: alpine
      command: [sh, -c, "[ \\"$OSMO_RETRY_ID\\" = 2 ] || exit 7"]
      exitActions: {{RESCHEDULE: 7}}
""",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id)
    assert wf["status"] == "COMPLETED", wf
    assert wf["id"] == wf_id and wf["pool"] == "default" and wf["priority"] == "NORMAL"
    assert isinstance(wf["submitted_by"], str) and wf["submitted_by"]
    assert [(g["name"], g["status"]) for g in wf["groups"]] == [
        ("pair", "COMPLETED"),
        ("retrying", "COMPLETED"),
    ]
    for t in tasks_of(wf):
        assert {"name", "status", "exit_code", "retry_id", "lead"} <= set(t), t
    summary = [
        (t["name"], t["status"], t["exit_code"], t["retry_id"], t["lead"]) for t in tasks_of(wf)
    ]
    assert summary == [
        ("lead", "COMPLETED", 0, 0, True),
        ("helper", "COMPLETED", 0, 0, False),
        ("flaky", "COMPLETED", 0, 2, True),
    ]

    verbose = platform.query(wf_id, verbose=True)
    flaky = [
        (t["retry_id"], t["status"], t["exit_code"])
        for t in tasks_of(verbose)
        if t["name"] == "flaky"
    ]
    assert flaky == [(0, "RESCHEDULED", 7), (1, "RESCHEDULED", 7), (2, "COMPLETED", 0)]
    assert [t["name"] for t in tasks_of(verbose)].count("lead") == 1

    text = platform.osmo("workflow", "query", wf_id).stdout
    head = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(" : ") for line in text.split("\n\n")[0].splitlines())
    )
    assert head["Workflow ID"] == wf_id and head["Status"] == "COMPLETED"
    assert head["Pool"] == "default" and head["Submitted by"] == wf["submitted_by"]
    header = text.split("\n\n")[1].splitlines()[0].split()
    assert header[:3] == ["GROUP", "TASK", "STATUS"]
    assert [r[:5] for r in rows(text)] == [
        ["pair", "lead", "COMPLETED", "0", "0"],
        ["pair", "helper", "COMPLETED", "0", "0"],
        ["retrying", "flaky", "COMPLETED", "0", "2"],
    ]
    vtext = platform.osmo("workflow", "query", wf_id, "-v").stdout
    assert [(r[1], r[2], r[4]) for r in rows(vtext) if r[1] == "flaky"] == [
        ("flaky", "RESCHEDULED", "0"),
        ("flaky", "RESCHEDULED", "1"),
        ("flaky", "COMPLETED", "2"),
    ]
    assert "not found" in fails(platform, "workflow", "query", f"{name}-9")
    assert "not found" in fails(platform, "workflow", "query", f"{name}-9", "-t", "json")


def test_events_and_spec(platform: Platform, tmp_path: Path) -> None:
    name = unique("events")
    path = write(
        tmp_path,
        f"""
default-values: {{msg: hi}}
workflow:
  name: {name}
  tasks:
  - name: first
    image: alpine
    command: [sh, -c, "echo {{{{msg}}}}; sleep 1"]
  - name: second
    image: alpine
    command: [sh, -c, "sleep 1; exit 4"]
    inputs: [{{task: first}}]
""",
    )
    # Each task runs a second, so the operator sees it RUNNING (a task that ends between two of
    # its scans is reported finished only, with no RUNNING event).
    wf_id = platform.submit(path, "--set", "msg=hello")
    wf = platform.wait(wf_id)
    assert wf["status"] == "FAILED"

    out = platform.osmo("workflow", "events", wf_id, "--format-type", "json").stdout
    events = json.loads(out)["events"]
    times = [e["time"] for e in events]
    assert times == sorted(times)
    messages = [e["message"] for e in events]

    def where(fragment: str, task_name: str | None = None) -> int:
        for i, e in enumerate(events):
            if fragment in e["message"] and (task_name is None or e["task"] == task_name):
                return i
        raise AssertionError(f"no event with {fragment!r} for {task_name}: {messages}")

    submitted = where("submitted")
    first_running, first_done = where("RUNNING", "first"), where("finished", "first")
    second_running, second_done = where("RUNNING", "second"), where("finished", "second")
    finished = where("workflow finished")
    assert submitted == 0 and finished == len(events) - 1
    assert submitted < first_running < first_done < second_running < second_done < finished
    assert "COMPLETED" in messages[first_done] and "exit code 4" in messages[second_done]
    assert "FAILED" in messages[finished]

    only = json.loads(
        platform.osmo("workflow", "events", wf_id, "-t", "second", "--format-type", "json").stdout
    )["events"]
    assert only and {e["task"] for e in only} == {"second"}
    text = platform.osmo("workflow", "events", wf_id).stdout.splitlines()
    assert len(text) == len(events)
    assert "submitted" in text[0] and "workflow finished" in text[-1]
    assert "not found" in fails(platform, "workflow", "events", f"{name}-9")

    rendered = platform.osmo("workflow", "spec", wf_id).stdout
    assert "echo hello" in rendered and "{{" not in rendered
    assert yaml.safe_load(rendered)["workflow"]["name"] == name
    template = platform.osmo("workflow", "spec", wf_id, "--template").stdout
    assert template == path.read_text()
    assert "not found" in fails(platform, "workflow", "spec", f"{name}-9")


# ---- version, login, logout -----------------------------------------------------------------


def client_env(platform: Platform, home: Path) -> dict[str, str]:
    """A client with its own OSMO_HOME and neither OSMO_URL nor OSMO_USER."""
    env = {k: v for k, v in platform.env().items() if k not in ("OSMO_URL", "OSMO_USER")}
    env["OSMO_HOME"] = str(home)
    return env


def test_version_login_logout(platform: Platform, tmp_path: Path) -> None:
    home = tmp_path / "client"
    env = client_env(platform, home)

    # Neither OSMO_URL nor a profile: say how to get a server.
    message = fails(platform, "workflow", "list", env=env)
    assert "osmo standalone" in message and "osmo login" in message and "OSMO_URL" in message
    out = run("version", env=env, check=True)
    assert out.stdout.splitlines()[0].startswith("client ")

    # With OSMO_URL: both versions.
    both = json.loads(platform.osmo("version", "-t", "json").stdout)
    assert both["client"] and both["server"] and both["url"] == platform.url
    text = platform.osmo("version").stdout
    assert f"client {both['client']}" in text and f"server {both['server']}" in text

    # osmo login stores a profile that later commands use without OSMO_URL.
    refused = run("login", "http://127.0.0.1:1", env=env)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert "cannot reach" in refused.stderr
    assert not (home / "client.yaml").exists()
    out = run("login", platform.url, env=env, check=True)
    assert platform.url in out.stdout
    assert yaml.safe_load((home / "client.yaml").read_text())["url"] == platform.url
    assert run("version", env=env, check=True).stdout == text
    spec = write(
        tmp_path,
        f"workflow: {{name: {unique('login')}, tasks: [{{name: t, image: a, command: [true]}}]}}",
    )
    out = run("workflow", "submit", str(spec), "-t", "json", env=env, check=True)
    wf_id = json.loads(out.stdout)["id"]
    assert platform.wait(wf_id)["status"] == "COMPLETED"
    out = run("workflow", "query", wf_id, "-t", "json", env=env, check=True)
    assert json.loads(out.stdout)["id"] == wf_id

    # --username: later commands act as that user.
    run("login", platform.url, "--username", "bob", env=env, check=True)
    out = run("workflow", "submit", str(spec), "-t", "json", env=env, check=True)
    assert platform.wait(json.loads(out.stdout)["id"])["submitted_by"] == "bob"

    # A local DATA credential in the same file survives logout; the server URL does not.
    profile = yaml.safe_load((home / "client.yaml").read_text())
    profile["credentials"] = {"bucket": {"access_key_id": "AK", "endpoint": "s3://bucket"}}
    (home / "client.yaml").write_text(yaml.safe_dump(profile))
    out = run("logout", env=env, check=True)
    assert "logged out" in out.stdout
    message = fails(platform, "workflow", "query", wf_id, env=env)
    assert "osmo standalone" in message
    left = yaml.safe_load((home / "client.yaml").read_text())
    assert "url" not in left and "user" not in left
    assert left["credentials"]["bucket"]["access_key_id"] == "AK"
    # Logging out twice is harmless; OSMO_URL still wins over a missing profile.
    run("logout", env=env, check=True)
    out = run("workflow", "query", wf_id, env={**env, "OSMO_URL": platform.url})
    assert out.returncode == 0 and wf_id in out.stdout


# ---- REST API -------------------------------------------------------------------------------


def test_openapi_and_spec_errors_over_http(platform: Platform) -> None:
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        doc = http.get("/api/openapi.json")
        assert doc.status_code == 200
        paths = doc.json()["paths"]
        assert "post" in paths["/api/pool/{pool}/workflow"]
        assert "get" in paths["/api/workflow/{workflow_id}"]
        assert "get" in paths["/api/workflow"]

        name = unique("badapi")
        text = (
            f"workflow:\n  name: {name}\n  tasks:\n"
            "  - name: a\n    image: x\n    command: [true]\n    bogus: 1\n"
            "  - name: a\n    image: x\n    command: [true]\n"
        )
        r = http.post("/api/pool/default/workflow", json={"file": text})
        assert r.status_code == 400, r.text
        body = r.json()
        assert {"error_code", "message", "errors"} <= set(body)
        assert body["error_code"] and body["message"]
        errors = body["errors"]
        assert len(errors) == 2
        for e in errors:
            assert {"message", "line", "column"} <= set(e), e
        assert [(e["line"], e["column"]) for e in errors] == [(7, 5), (8, 11)]
        assert "bogus" in errors[0]["message"] and "duplicate" in errors[1]["message"]

        r = http.post("/api/pool/default/workflow", json={"file": "workflow: [\n"})
        assert r.status_code == 400
        (e,) = r.json()["errors"]
        assert e["line"] == 1 and e["column"] >= 1 and "YAML" in e["message"]

        r = http.post("/api/pool/default/workflow", json={})
        assert r.status_code == 400 and r.json()["error_code"]
        r = http.get("/api/workflow", params={"name": name})
        assert r.status_code == 200 and r.json()["workflows"] == []
        r = http.get(f"/api/workflow/{name}-1")
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
