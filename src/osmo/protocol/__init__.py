"""Messages between operators and the control plane (versioned; shared by both sides)."""

from .messages import *  # noqa: F403
from .messages import __all__ as _all

__all__ = list(_all)
