"""Typed Python SDK over the osmo REST API."""

from .client import ApiError, ConnectionFailed, OsmoClient
from .profile import Profile, load_profile, save_profile

__all__ = ["ApiError", "ConnectionFailed", "OsmoClient", "Profile", "load_profile", "save_profile"]
