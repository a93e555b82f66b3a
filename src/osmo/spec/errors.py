"""Located spec errors: every problem names what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SpecIssue:
    """One problem found in a workflow file.

    ``line`` and ``column`` are 1-based positions in the file the user wrote (mapped back
    through template rendering where possible); ``key`` is a dotted path such as
    ``workflow.tasks[0].resource``; ``task`` names the task when the problem belongs to one.
    """

    message: str
    line: int | None = None
    column: int | None = None
    key: str | None = None
    task: str | None = None

    def format(self, filename: str = "<spec>") -> str:
        message = " ".join(self.message.splitlines())  # one issue, one line
        if self.line is None:
            return f"{filename}: {message}"
        return f"{filename}:{self.line}:{self.column or 1}: {message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "task": self.task,
            "key": self.key,
        }


@dataclass
class SpecError(Exception):
    """Raised with every problem of a file at once (never just the first)."""

    issues: list[SpecIssue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.summary())

    def summary(self) -> str:
        if not self.issues:
            return "invalid workflow spec"
        if len(self.issues) == 1:
            return self.issues[0].message
        return f"{len(self.issues)} errors in workflow spec; first: {self.issues[0].message}"

    def format(self, filename: str = "<spec>") -> str:
        return "\n".join(issue.format(filename) for issue in self.issues)
