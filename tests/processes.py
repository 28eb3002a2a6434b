"""Process checks for tests that kill a parent and wait for its children to end."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def process_running(pid: int) -> bool:
    """Whether ``pid`` runs: an orphan that ended is a zombie until init reaps it (a
    container's first process may never), which is not running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
