"""Exit codes the runtime reports besides the command's own (reference §2.3)."""

from __future__ import annotations

RUNTIME_ERROR = 2002  # unknown runtime error (incl. the sandbox failing to start)
DOWNLOAD_FAILED = 2010
UPLOAD_FAILED = 2012
BARRIER_FAILED = 2024
INVALID_INPUT = 2030  # unreadable task.json, unresolvable token
INVALID_FILE = 2032  # injected file that cannot be made
SIGNAL_BASE = 128  # killed by signal N -> 128 + N
COMMAND_NOT_FOUND = 127
COMMAND_NOT_EXECUTABLE = 126
