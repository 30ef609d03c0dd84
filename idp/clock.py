"""The one clock of the service: UTC, replaceable in tests to move time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    """Current time, timezone-aware UTC, shifted by whatever a test set."""
    return datetime.now(UTC) + _offset


def travel(delta: timedelta) -> None:
    """Move the clock forward (tests only): every later ``now()`` is ``delta`` later."""
    global _offset
    _offset += delta


def reset() -> None:
    """Undo every :func:`travel`."""
    global _offset
    _offset = timedelta(0)
