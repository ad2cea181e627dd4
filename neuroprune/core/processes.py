"""Whether a process still runs (layer L0): the one test every sweep of stale files uses."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists (``kill(pid, 0)``; a process of another user, which
    answers ``EPERM``, counts as alive, so its files are never swept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
