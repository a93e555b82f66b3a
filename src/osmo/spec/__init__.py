"""Workflow spec: render (sandboxed Jinja), parse and validate OSMO v2 workflow files."""

from .errors import SpecError, SpecIssue
from .model import (
    CheckpointSpec,
    DatasetRef,
    FileSpec,
    GroupSpec,
    InputSpec,
    OutputSpec,
    ResourceSpec,
    TaskSpec,
    TimeoutSpec,
    WorkflowSpec,
)
from .parser import ParseResult, parse_rendered, parse_workflow
from .template import Rendered, parse_set_values, render

__all__ = [
    "CheckpointSpec",
    "DatasetRef",
    "FileSpec",
    "GroupSpec",
    "InputSpec",
    "OutputSpec",
    "ParseResult",
    "Rendered",
    "ResourceSpec",
    "SpecError",
    "SpecIssue",
    "TaskSpec",
    "TimeoutSpec",
    "WorkflowSpec",
    "parse_rendered",
    "parse_set_values",
    "parse_workflow",
    "render",
]
