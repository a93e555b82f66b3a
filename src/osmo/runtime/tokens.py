"""Run-time substitution of the special tokens the spec leaves in commands, env and files.

``{{workflow_id}}``, ``{{output}}``, ``{{input:N}}``, ``{{input:<task>}}``, ``{{host:<task>}}``
and ``{{uuid}}``, with optional spaces inside the braces. Anything else in braces is left alone
(shell or Jinja-looking text in user files must survive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Same token grammar as osmo.spec.template.TOKEN_RE (not imported: the spec package pulls in
# Jinja, and this module is loaded in every task supervisor).
TOKEN_RE = re.compile(r"\{\{\s*(workflow_id|output|uuid|input:[^{}\s]+|host:[^{}\s]+)\s*\}\}")


class TokenError(ValueError):
    """A token names an input or host the task does not have."""


@dataclass(frozen=True)
class TokenContext:
    """Token values as the task sees them (sandbox paths, or real host paths in fallback)."""

    workflow_id: str
    output: str
    inputs: list[str] = field(default_factory=list)  # path of input i
    input_names: dict[str, int] = field(default_factory=dict)  # upstream task -> input index
    hosts: dict[str, str] = field(default_factory=dict)
    uuid: str = ""


def substitute(text: str, ctx: TokenContext) -> str:
    if "{{" not in text:
        return text  # fast path: most strings carry no token

    def repl(m: re.Match[str]) -> str:
        token = m.group(1)
        kind, _, arg = token.partition(":")
        if kind == "workflow_id":
            return ctx.workflow_id
        if kind == "output":
            return ctx.output
        if kind == "uuid":
            return ctx.uuid
        if kind == "input":
            if arg.isdigit():
                i = int(arg)
                if i >= len(ctx.inputs):
                    raise TokenError(
                        f"{{{{input:{arg}}}}} refers to input {i}, "
                        f"but the task has {len(ctx.inputs)} input(s)"
                    )
                return ctx.inputs[i]
            if arg not in ctx.input_names:
                raise TokenError(f"{{{{input:{arg}}}}} names a task that is not among the inputs")
            return ctx.inputs[ctx.input_names[arg]]
        # host
        if arg not in ctx.hosts:
            raise TokenError(f"{{{{host:{arg}}}}} names a task that is not in the group")
        return ctx.hosts[arg]

    return TOKEN_RE.sub(repl, text)
