"""``osmo workflow`` commands that talk to a server (submit, list, query, logs, ...)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from .connect import api
from .errors import CliError
from .output import echo_fields, echo_json, format_option, table

WORKFLOW_ID_RE = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?-\d+$")


def read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, expected a workflow YAML file") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None


def inline_localpaths(
    path: str, text: str, set_: tuple[str, ...], set_string: tuple[str, ...]
) -> str | None:
    """Rendered YAML with ``localpath`` files read in, or None when the file uses none."""
    if "localpath" not in text:
        return None
    import yaml

    from ..spec import SpecError, parse_set_values, render
    from ..spec.localfiles import inline_localpaths as inline
    from ..spec.parser import parse_rendered

    try:
        rendered = render(
            text,
            parse_set_values(list(set_), as_string=False, flag="--set"),
            parse_set_values(list(set_string), as_string=True, flag="--set-string"),
        )
        result = parse_rendered(rendered)
        issues = inline(result.spec, Path(path).resolve().parent, text)
        if issues:
            raise SpecError(issues)
    except SpecError as exc:
        raise CliError(exc.format(path)) from None
    contents = {(t.name, f.path): f for t in result.spec.tasks for f in t.files}
    data = yaml.safe_load(rendered.text)
    wf = data.get("workflow", {})
    task_lists = [wf.get("tasks") or []] + [g.get("tasks") or [] for g in wf.get("groups") or []]
    for tasks in task_lists:
        for t in tasks:
            for f in t.get("files") or []:
                spec_file = contents.get((t.get("name"), f.get("path")))
                if spec_file is not None and "localpath" in f:
                    del f["localpath"]
                    f["contents"] = spec_file.contents
                    if spec_file.base64:
                        f["base64"] = True
    return str(yaml.safe_dump(data, sort_keys=False))


@click.command()
@click.argument("file_or_id")
@click.option(
    "--set",
    "set_",
    multiple=True,
    metavar="KEY=VALUE",
    help="Template variable (int, float or string).",
)
@click.option(
    "--set-string", multiple=True, metavar="KEY=VALUE", help="Template variable kept as a string."
)
@click.option(
    "--set-env", multiple=True, metavar="KEY=VALUE", help="Environment variable for every task."
)
@click.option("--pool", "-p", default="default", show_default=True, help="Pool to run in.")
@click.option(
    "--priority",
    type=click.Choice(["HIGH", "NORMAL", "LOW"], case_sensitive=False),
    default="NORMAL",
    show_default=True,
)
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Workflow label; repeatable.")
@click.option(
    "--dry-run", is_flag=True, help="Render and validate on the server; print the rendered spec."
)
@format_option
def submit(
    file_or_id: str,
    set_: tuple[str, ...],
    set_string: tuple[str, ...],
    set_env: tuple[str, ...],
    pool: str,
    priority: str,
    label: tuple[str, ...],
    dry_run: bool,
    format_type: str,
) -> None:
    """Submit a workflow file (or resubmit a stored workflow by its id)."""
    template = None
    if not Path(file_or_id).exists() and WORKFLOW_ID_RE.match(file_or_id):
        if set_ or set_string or dry_run:
            raise CliError(
                "error: --set, --set-string and --dry-run cannot be used when resubmitting a "
                "workflow id"
            )
        with api() as c:
            text = c.spec(file_or_id)
            template = c.spec(file_or_id, template=True)
        filename = file_or_id
    else:
        text = read_text(file_or_id)
        filename = file_or_id
        inlined = inline_localpaths(file_or_id, text, set_, set_string)
        if inlined is not None:
            template, text = text, inlined
            set_ = set_string = ()
    with api(filename) as c:
        result = c.submit(
            pool,
            text,
            set_values=list(set_),
            set_strings=list(set_string),
            template=template,
            priority=priority.upper(),
            labels=list(label),
            env_vars=list(set_env),
            dry_run=dry_run,
        )
    if dry_run:
        if format_type == "json":
            echo_json(result)
        else:
            click.echo(result.get("spec", ""), nl=False)
        return
    if format_type == "json":
        echo_json({"id": result["id"]})
    else:
        click.echo(f"Workflow submitted: {result['id']}")


def _print_workflow(wf: dict[str, Any]) -> None:
    fields = [
        ("Workflow ID", wf["id"]),
        ("Status", wf["status"]),
        ("Pool", wf["pool"]),
        ("Priority", wf["priority"]),
        ("Submitted by", wf["submitted_by"]),
        ("Submitted at", wf["submitted_at"]),
    ]
    for key, label in (
        ("started_at", "Started at"),
        ("finished_at", "Finished at"),
        ("parent_workflow_id", "Restarted from"),
        ("canceled_by", "Canceled by"),
        ("message", "Message"),
    ):
        if wf.get(key):
            fields.append((label, wf[key]))
    if wf.get("labels"):
        fields.append(("Labels", ", ".join(f"{k}={v}" for k, v in wf["labels"].items())))
    echo_fields(fields)
    rows = []
    for g in wf["groups"]:
        for t in g["tasks"]:
            rows.append(
                [
                    g["name"],
                    t["name"],
                    t["status"],
                    t["exit_code"],
                    t["retry_id"],
                    "yes" if t["lead"] else "",
                    t.get("node") or "",
                ]
            )
    click.echo()
    click.echo(table(["GROUP", "TASK", "STATUS", "EXIT CODE", "RETRY", "LEAD", "NODE"], rows))


@click.command()
@click.argument("workflow_id")
@click.option("--verbose", "-v", is_flag=True, help="Show every retry of each task.")
@format_option
def query(workflow_id: str, verbose: bool, format_type: str) -> None:
    """Show a workflow's status, groups and tasks."""
    with api() as c:
        wf = c.query(workflow_id, verbose=verbose)
    if format_type == "json":
        echo_json(wf)
    else:
        _print_workflow(wf)


@click.command(name="list")
@click.option("--count", "-c", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", "-f", default=0, type=click.IntRange(0))
@click.option("--name", "-n", help="Workflow name contains (glob).")
@click.option(
    "--order", "-o", type=click.Choice(["asc", "desc"]), default="desc", show_default=True
)
@click.option("--status", "-s", "statuses", multiple=True, help="Filter by status; repeatable.")
@click.option("--user", "-u", "users", multiple=True, help="Filter by submitter; repeatable.")
@click.option("--pool", "-p", "pools", multiple=True, help="Filter by pool; repeatable.")
@click.option(
    "--priority", multiple=True, type=click.Choice(["HIGH", "NORMAL", "LOW"], case_sensitive=False)
)
@click.option(
    "--label",
    multiple=True,
    metavar="KEY=SELECTOR",
    help="Label filter (glob *, (a|b)); repeatable, ANDed.",
)
@click.option("--no-label", multiple=True, metavar="KEY", help="Workflows without this label key.")
@click.option("--submitted-after", metavar="YYYY-MM-DD")
@click.option("--submitted-before", metavar="YYYY-MM-DD")
@format_option
def list_(
    count: int,
    offset: int,
    name: str | None,
    order: str,
    statuses: tuple[str, ...],
    users: tuple[str, ...],
    pools: tuple[str, ...],
    priority: tuple[str, ...],
    label: tuple[str, ...],
    no_label: tuple[str, ...],
    submitted_after: str | None,
    submitted_before: str | None,
    format_type: str,
) -> None:
    """List workflows, newest first."""
    with api() as c:
        result = c.list_workflows(
            limit=count,
            offset=offset,
            name=name,
            order=order,
            statuses=list(statuses),
            users=list(users),
            pools=list(pools),
            priority=list(priority),
            label=list(label),
            no_label=list(no_label),
            submitted_after=submitted_after,
            submitted_before=submitted_before,
        )
    if format_type == "json":
        echo_json(result)
        return
    rows = [
        [w["id"], w["status"], w["pool"], w["priority"], w["submitted_by"], w["submitted_at"]]
        for w in result["workflows"]
    ]
    click.echo(table(["ID", "STATUS", "POOL", "PRIORITY", "USER", "SUBMITTED"], rows))
    if result.get("more"):
        click.echo(f"(more: use --offset {offset + count})")


@click.command()
@click.argument("workflow_id")
@click.option("--task", "-t", help="Only this task.")
@click.option("--retry-id", "-r", type=int, help="Only this retry of the task.")
@click.option("--error", is_flag=True, help="Show error logs of failed tasks.")
@click.option("-n", "last_n", type=click.IntRange(1), help="Only the last N lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the workflow finishes.")
def logs(
    workflow_id: str,
    task: str | None,
    retry_id: int | None,
    error: bool,
    last_n: int | None,
    follow: bool,
) -> None:
    """Print a workflow's task logs (live while it runs, archived after)."""
    out = sys.stdout.buffer
    with api() as c:
        for chunk in c.logs(
            workflow_id, task=task, retry_id=retry_id, last_n=last_n, follow=follow, error=error
        ):
            out.write(chunk)
            out.flush()


@click.command()
@click.argument("workflow_id")
@click.option("--task", "-t", help="Only this task.")
@click.option("--retry-id", "-r", type=int)
@click.option("--format-type", "format_type", type=click.Choice(["text", "json"]), default="text")
def events(workflow_id: str, task: str | None, retry_id: int | None, format_type: str) -> None:
    """Show what happened to a workflow and its tasks, in order."""
    with api() as c:
        result = c.events(workflow_id, task=task, retry_id=retry_id)
    if format_type == "json":
        echo_json(result)
        return
    for e in result["events"]:
        who = (
            f" [{e['task']}" + (f" retry {e['retry_id']}" if e.get("retry_id") else "") + "]"
            if e.get("task")
            else ""
        )
        click.echo(f"{e['time']}{who} {e['message']}")


@click.command()
@click.argument("workflow_ids", nargs=-1, required=True)
@click.option("--message", "-m", help="Why it is canceled (recorded).")
@click.option("--force", "-f", is_flag=True, help="Clean up again even if the workflow finished.")
@format_option
def cancel(
    workflow_ids: tuple[str, ...], message: str | None, force: bool, format_type: str
) -> None:
    """Cancel workflows: every task stops and is marked FAILED_CANCELED."""
    from ..client import ApiError

    failed = False
    results = []
    with api() as c:
        for wf_id in workflow_ids:
            try:
                r = c.cancel(wf_id, message=message, force=force)
                results.append(r)
                if format_type == "text":
                    click.echo(f"Workflow {r['id']} canceled ({r['status']})")
            except ApiError as exc:
                failed = True
                results.append({"id": wf_id, "error": exc.message})
                click.echo(f"error: {exc.message}", err=True)
    if format_type == "json":
        echo_json(results)
    if failed:
        raise CliError("", exit_code=1)


@click.command()
@click.argument("workflow_id")
@click.option("--pool", "-p", help="Pool for the new workflow (default: the old one's).")
@format_option
def restart(workflow_id: str, pool: str | None, format_type: str) -> None:
    """Run the groups of a failed workflow that did not complete, as a new workflow."""
    with api() as c:
        target = pool or c.query(workflow_id)["pool"]
        result = c.restart(target, workflow_id)
    if format_type == "json":
        echo_json({"id": result["id"]})
    else:
        click.echo(f"Workflow restarted: {result['id']}")


@click.command()
@click.argument("workflow_id")
@click.option(
    "--template", is_flag=True, help="The original templated spec instead of the rendered one."
)
def spec(workflow_id: str, template: bool) -> None:
    """Print a workflow's stored spec."""
    with api() as c:
        click.echo(c.spec(workflow_id, template=template), nl=False)


COMMANDS = [submit, query, list_, logs, events, cancel, restart, spec]
