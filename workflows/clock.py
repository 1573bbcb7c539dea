"""The case clock.

Scripts, conditions and timers must read time from the case's clock, never the
wall clock, so that replay (which sets the clock to each recorded event's time)
reproduces exactly what happened. SpiffWorkflow's timer module calls
``datetime.now(timezone.utc)`` directly, so we swap that module's ``datetime``
for a subclass whose ``now()`` honours the clock set here. The value lives in a
ContextVar, so threads and requests never see each other's clock.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterator

_case_now: ContextVar[datetime | None] = ContextVar("gridcase_case_now", default=None)


def utcnow() -> datetime:
    """Wall-clock time, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


def current_time() -> datetime:
    """The case clock if one is set, else the wall clock; always aware UTC."""
    value = _case_now.get()
    return value if value is not None else utcnow()


@contextmanager
def case_clock(at: datetime) -> Iterator[datetime]:
    """Run engine work as if the time were ``at`` (must be timezone-aware)."""
    if at.tzinfo is None:
        raise ValueError("the case clock needs a timezone-aware datetime")
    token = _case_now.set(at.astimezone(timezone.utc))
    try:
        yield at
    finally:
        _case_now.reset(token)


class _ClockedDatetime(datetime):
    """``datetime`` whose ``now()`` reads the case clock."""

    @classmethod
    def now(cls, tz=None):  # noqa: D102 - same contract as datetime.now
        value = _case_now.get()
        if value is None:
            return datetime.now(tz)
        return value.astimezone(tz) if tz is not None else value.astimezone().replace(tzinfo=None)


def install() -> None:
    """Point SpiffWorkflow's timer module at the case clock (idempotent)."""
    from SpiffWorkflow.bpmn.specs.event_definitions import timer

    if timer.datetime is not _ClockedDatetime:
        timer.datetime = _ClockedDatetime


install()
