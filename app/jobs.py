"""Background work: firing due timers.

The timers table is the truth; this module only asks "what is due?" and fires
each case in its own transaction (one commit per job). In embedded mode (no
REDIS_URL) a daemon thread in the web process does it every
TIMER_SWEEP_SECONDS; with Redis, rq jobs scheduled at each due time nudge the
case and the worker process runs the same sweep to catch anything a lost job
missed.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from flask import Flask
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from app.cases import service as cases
from app.db import commit, db, rollback
from app.runtime import runtime
from app.timeutil import utcnow
from workflows.errors import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    """A job run every ``every_seconds`` by whoever runs background work (the rq
    worker, or the embedded sweeper). ``func`` is a dotted path to a function that
    takes no arguments, needs an app context, commits its own work and is idempotent:
    with several workers it may run more than once per period."""

    name: str
    func: str
    every_seconds: int


PERIODIC_JOBS: dict[str, PeriodicJob] = {}


def register_periodic(name: str, func: str, every_seconds: int) -> None:
    PERIODIC_JOBS[name] = PeriodicJob(name, func, every_seconds)


def fire_due_timers(at: datetime | None = None) -> int:
    """Fire every due timer now; returns how many cases changed. Needs an app context."""
    at = at or utcnow()
    changed = 0
    for case_id in cases.due_timer_case_ids(at):
        rollback()  # end the read transaction before each case's own
        try:
            if cases.fire_case_timers(runtime(), case_id, at=at) is not None:
                changed += 1
            commit()
        except (EngineError, StaleDataError, OperationalError) as exc:
            rollback()
            log.error("firing timers of case id %s failed: %s", case_id, exc)
    rollback()
    return changed


def fire_case_timers_job(case_id: int) -> bool:
    """rq job: fire the due timers of one case (one transaction). Idempotent."""
    try:
        fired = cases.fire_case_timers(runtime(), case_id) is not None
        commit()
        return fired
    except Exception:
        rollback()
        raise
    finally:
        db.session.remove()


def start_sweeper(app: Flask) -> threading.Thread:
    interval = app.config["TIMER_SWEEP_SECONDS"]
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                with app.app_context():
                    fired = fire_due_timers()
                    db.session.remove()
                if fired:
                    log.info("sweeper fired timers in %d case(s)", fired)
            except Exception:  # never let the sweeper die: log and try again next round
                log.exception("timer sweep failed")

    thread = threading.Thread(target=loop, name="gridcase-timer-sweeper", daemon=True)
    thread.stop_event = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
