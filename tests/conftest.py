"""Fixtures for every layer."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """Every test leaves the process's SIGINT, SIGTERM and SIGHUP handlers as it found them:
    a command that installs its own (`local up` turns each into a KeyboardInterrupt, then
    ignores the next) would otherwise change what a later test's Ctrl-C does."""
    import signal

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {signum: signal.getsignal(signum) for signum in stop_signals}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
