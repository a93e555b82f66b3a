"""Errors the API turns into 4xx JSON: ``{"error_code", "message", "errors": [...]}``."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status_code = 400
    error_code = "BAD_REQUEST"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class NotFound(ServiceError):
    status_code = 404
    error_code = "NOT_FOUND"


class Conflict(ServiceError):
    status_code = 409
    error_code = "CONFLICT"


class InvalidSpec(ServiceError):
    status_code = 400
    error_code = "INVALID_SPEC"


class Forbidden(ServiceError):
    status_code = 403
    error_code = "FORBIDDEN"
