"""Background work: firing due timers and running periodic jobs.

The timers table is the truth; this module only asks "what is due?" and fires
each case in its own transaction (one commit per case). Who runs it:

* with Redis (``REDIS_URL``): ``gridcase worker`` processes. A job scheduled at
  each timer's due time nudges its case (:func:`fire_case_timers_job`); every
  registered periodic job — the timer sweep among them — is enqueued on its
  interval by whichever worker claims the period first (app.queue), so a job lost
  in Redis is caught by the next sweep.
* without Redis: a daemon thread in the web process (:func:`start_sweeper`) runs
  every periodic job on its interval, the timer sweep included.

Firing twice has no second effect: the case row lock serialises firers, and a
timer that is no longer ``waiting`` is not fired again.
"""
from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from app.cases import service as cases
from app.cases.models import CASE_ACTIVE, Case, Timer
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


TIMER_SWEEP = "timers.sweep"
# The sweep's interval is TIMER_SWEEP_SECONDS (config); 30 is only the default.
register_periodic(TIMER_SWEEP, "app.jobs.sweep_due_timers", 30)


def interval_of(job: PeriodicJob, config: Any = None) -> int | None:
    """The job's period in seconds, or None when it is turned off: PERIODIC_JOB_SECONDS[name]
    (config) overrides the registered value (0 turns the job off on this deployment); the
    timer sweep follows TIMER_SWEEP_SECONDS."""
    config = config if config is not None else current_app.config
    overrides = config.get("PERIODIC_JOB_SECONDS") or {}
    if job.name in overrides:
        return max(1, int(overrides[job.name])) if overrides[job.name] else None
    if job.name == TIMER_SWEEP:
        return max(1, int(config.get("TIMER_SWEEP_SECONDS") or job.every_seconds))
    return max(1, int(job.every_seconds))


def resolve(func: str) -> Callable:
    module_name, _, name = func.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


# -- firing timers ---------------------------------------------------------------------------
def fire_due_timers(at: datetime | None = None, *, budget_seconds: float | None = None) -> int:
    """Fire every due timer; returns how many cases changed. Needs an app context.

    Each case is fired in its own transaction. The next due case is claimed with
    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers sweeping at once
    share the work instead of queueing behind one another (the row lock is the one
    every writer of a case takes first, so lock order never differs). ``at`` fixes
    the clock (tests, the CLI); by default each case is fired at the current time.
    Stops after ``budget_seconds`` (the next sweep carries on)."""
    deadline = time.monotonic() + budget_seconds if budget_seconds else None
    changed = 0
    passed: set[int] = set()  # due but not fired this round (not active, engine refused, failed)
    rollback()
    while deadline is None or time.monotonic() < deadline:
        moment = at or utcnow()
        case_id = _claim_due_case(moment, passed)
        if case_id is None:
            break
        try:
            if cases.fire_case_timers(runtime(), case_id, at=moment) is not None:
                changed += 1
            else:
                passed.add(case_id)
            commit()
        except (EngineError, StaleDataError, OperationalError) as exc:
            rollback()
            passed.add(case_id)
            log.error("firing timers of case %s failed: %s", _reference(case_id), exc)
    rollback()
    return changed


def _claim_due_case(at: datetime, passed: set[int]) -> int | None:
    statement = (
        select(Case.id)
        .join(Timer, Timer.case_id == Case.id)
        .where(Timer.state == "waiting", Timer.due_at < at, Case.status == CASE_ACTIVE)  # fires strictly after due
        .order_by(Timer.due_at)
        .limit(1)
    )
    if passed:
        statement = statement.where(Case.id.not_in(passed))
    if db.session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(of=Case, skip_locked=True)
    return db.session.scalar(statement)


def sweep_due_timers() -> int:
    """Periodic job: fire everything overdue (what a lost or late nudge missed)."""
    fired = fire_due_timers(budget_seconds=current_app.config.get("TIMER_SWEEP_BUDGET_SECONDS", 240))
    if fired:
        log.info("timer sweep fired timers in %d case(s)", fired)
    return fired


def fire_case_timers_job(case_id: int) -> bool:
    """rq job scheduled at a timer's due time: fire the due timers of one case (one
    transaction). Idempotent: when another worker or the sweep got there first,
    nothing changes. Then, for up to TIMER_NUDGE_CATCH_UP_SECONDS, it fires other
    overdue cases, so a burst of timers due together is shared by every worker."""
    reference = _reference(case_id)
    _tag_current_job(reference)
    try:
        fired = cases.fire_case_timers(runtime(), case_id) is not None
        commit()
    except Exception as exc:
        rollback()
        log.error("firing timers of case %s failed: %s", reference, exc)
        raise
    finally:
        db.session.remove()
    if fired:
        log.info("fired timers of case %s", reference)
    catch_up = current_app.config.get("TIMER_NUDGE_CATCH_UP_SECONDS", 0)
    if catch_up:
        try:
            fire_due_timers(budget_seconds=catch_up)
        finally:
            db.session.remove()
    return fired


def _reference(case_id: int) -> str:
    """The case reference for log lines and the admin page (the id if unknown)."""
    try:
        reference = db.session.scalar(select(Case.reference).where(Case.id == case_id))
    except Exception:  # logging must never fail the caller
        rollback()
        reference = None
    return reference or f"#{case_id}"


def _tag_current_job(reference: str) -> None:
    """Name the case on the running rq job (shown with failed jobs on the admin page)."""
    try:
        from rq import get_current_job

        job = get_current_job()
        if job is not None and not job.meta.get("case") and not reference.startswith("#"):
            job.meta["case"] = reference
            job.save_meta()
    except Exception:  # noqa: BLE001 - only a label
        pass


# -- periodic jobs ---------------------------------------------------------------------------
RUNS_KEY = "gridcase:periodic:runs"
_LOCAL_RUNS: dict[str, dict] = {}  # embedded mode: last run per job, in this process


def run_periodic_job(name: str) -> Any:
    """Run the registered periodic job ``name`` and record its last run (Redis when the
    queue is on Redis, this process otherwise). Needs an app context."""
    job = PERIODIC_JOBS[name]
    started, begun = utcnow(), time.monotonic()
    record = {"at": started.isoformat(), "ok": True, "error": None}
    try:
        return resolve(job.func)()
    except Exception as exc:
        rollback()
        record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        log.error("periodic job %s (%s) failed: %s\n%s", name, job.func, exc, traceback.format_exc())
        raise
    finally:
        record["seconds"] = round(time.monotonic() - begun, 3)
        _remember_run(name, record)
        db.session.remove()


def _remember_run(name: str, record: dict) -> None:
    from app.queue import redis_connection

    _LOCAL_RUNS[name] = record
    connection = redis_connection()
    if connection is not None:
        try:
            connection.hset(RUNS_KEY, name, json.dumps(record))
        except Exception as exc:  # noqa: BLE001 - the run happened; only its record is lost
            log.warning("could not record the run of %s on Redis: %s", name, exc)


def last_runs() -> dict[str, dict]:
    from app.queue import redis_connection

    connection = redis_connection()
    if connection is None:
        return dict(_LOCAL_RUNS)
    try:
        return {key.decode(): json.loads(value) for key, value in connection.hgetall(RUNS_KEY).items()}
    except Exception:  # noqa: BLE001 - shown as "unknown" on the status page
        return {}


# -- embedded mode ---------------------------------------------------------------------------
SWEEPER: dict[str, Any] = {}  # the running sweeper thread and its next run times (status page)


def start_sweeper(app: Flask, *, tick_seconds: float = 1.0) -> threading.Thread:
    """Embedded mode: a daemon thread that runs every registered periodic job on its
    interval (the timer sweep included), each in its own app context. The first round
    runs at once, so timers that fell due while nothing ran fire at start-up."""
    stop = threading.Event()
    next_run: dict[str, float] = {}

    def loop() -> None:
        while not stop.is_set():
            for name, job in list(PERIODIC_JOBS.items()):
                if stop.is_set() or time.monotonic() < next_run.get(name, 0.0):
                    continue
                seconds = interval_of(job, app.config)
                if seconds is None:
                    continue
                try:
                    with app.app_context():
                        next_run[name] = time.monotonic() + seconds
                        run_periodic_job(name)
                except Exception:  # never let the sweeper die: logged by run_periodic_job; try next round
                    pass
            stop.wait(tick_seconds)

    thread = threading.Thread(target=loop, name="gridcase-timer-sweeper", daemon=True)
    thread.stop_event = stop  # type: ignore[attr-defined]
    SWEEPER.update(thread=thread, next_run=next_run, started_at=utcnow())
    thread.start()
    return thread


# -- status (the admin page /admin/jobs) -------------------------------------------------------
@dataclass
class JobStatus:
    mode: str                                   # "redis" or "embedded"
    redis_error: str | None = None
    queues: list[dict] = field(default_factory=list)       # name, queued, started
    scheduled: int = 0
    workers: int = 0
    failed: list[dict] = field(default_factory=list)       # id, func, case, error, at, queue
    failed_total: int = 0
    periodic: list[dict] = field(default_factory=list)     # name, func, every, last run
    overdue: list[dict] = field(default_factory=list)      # reference, timer, due_at, late_seconds
    overdue_total: int = 0
    sweeper_running: bool = False
    in_process: dict = field(default_factory=dict)
    in_process_failures: list[dict] = field(default_factory=list)


OVERDUE_GRACE_SECONDS = 60


def job_status(*, failed_limit: int = 50, overdue_limit: int = 20) -> JobStatus:
    """What background work looks like now. Needs an app context; never raises for Redis."""
    from sqlalchemy import func

    from app import queue as q

    connection = q.redis_connection()
    status = JobStatus(mode="redis" if connection is not None else "embedded")
    runs = {}
    if connection is not None:
        try:
            _redis_status(status, connection, failed_limit)
            runs = last_runs()
        except Exception as exc:  # noqa: BLE001 - shown on the page
            status.redis_error = f"{type(exc).__name__}: {exc}"
    else:
        thread = SWEEPER.get("thread")
        status.sweeper_running = bool(thread is not None and thread.is_alive())
        status.in_process = dict(q.IN_PROCESS)
        status.in_process_failures = list(q.IN_PROCESS_FAILURES)
        runs = last_runs()
    for name, job in sorted(PERIODIC_JOBS.items()):
        run = runs.get(name) or {}
        status.periodic.append({
            "name": name, "func": job.func, "every": interval_of(job), "at": _parse_time(run.get("at")),
            "ok": run.get("ok"), "seconds": run.get("seconds"), "error": run.get("error"),
        })
    limit = utcnow() - timedelta(seconds=OVERDUE_GRACE_SECONDS)
    overdue = (Timer.state == "waiting", Timer.due_at < limit)
    status.overdue_total = db.session.scalar(select(func.count()).select_from(Timer).where(*overdue)) or 0
    now = utcnow()
    for reference, name, due_at in db.session.execute(
        select(Case.reference, Timer.name, Timer.due_at).join(Case, Case.id == Timer.case_id)
        .where(*overdue).order_by(Timer.due_at).limit(overdue_limit)
    ):
        status.overdue.append({"reference": reference, "timer": name, "due_at": due_at,
                               "late_seconds": int((now - due_at).total_seconds())})
    return status


def _redis_status(status: JobStatus, connection, failed_limit: int) -> None:
    from rq import Queue, Worker
    from rq.job import Job
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
    from rq.serializers import JSONSerializer

    from app.queue import QUEUE_NAMES

    failed_ids: list[tuple[str, str]] = []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=connection, serializer=JSONSerializer)
        status.queues.append({"name": name, "queued": len(queue), "started": StartedJobRegistry(queue=queue).count})
        status.scheduled += ScheduledJobRegistry(queue=queue).count
        registry = FailedJobRegistry(queue=queue)
        status.failed_total += registry.count
        failed_ids += [(job_id, name) for job_id in registry.get_job_ids(0, failed_limit - 1, desc=True)]
    status.workers = len(Worker.all(connection=connection))
    jobs = Job.fetch_many([job_id for job_id, _ in failed_ids], connection=connection, serializer=JSONSerializer)
    for (job_id, queue_name), job in zip(failed_ids, jobs):
        if job is None:
            continue
        error = (job.exc_info or "").strip().splitlines()
        status.failed.append({
            "id": job_id, "queue": queue_name, "func": _safe(lambda: job.func_name),
            "args": _safe(lambda: job.args), "case": (job.meta or {}).get("case"),
            "error": error[-1] if error else "", "at": _aware(job.ended_at or job.enqueued_at),
        })
    status.failed.sort(key=lambda row: row["at"] or datetime.min.replace(tzinfo=timezone.utc), reverse=True)


def requeue_failed(job_id: str) -> bool:
    """Put a failed rq job back on its queue; False when it is not (or no longer) failed."""
    from rq import Queue
    from rq.exceptions import InvalidJobOperationError, NoSuchJobError
    from rq.registry import FailedJobRegistry
    from rq.serializers import JSONSerializer

    from app.queue import QUEUE_NAMES, redis_connection

    connection = redis_connection()
    if connection is None:
        return False
    for name in QUEUE_NAMES:
        registry = FailedJobRegistry(queue=Queue(name, connection=connection, serializer=JSONSerializer))
        if job_id in registry.get_job_ids(cleanup=False):
            try:
                registry.requeue(job_id)
            except (InvalidJobOperationError, NoSuchJobError):
                return False
            log.info("failed job %s requeued on %s", job_id, name)
            return True
    return False


def _safe(getter: Callable) -> Any:
    try:
        return getter()
    except Exception:  # noqa: BLE001 - a job that cannot be deserialised still shows
        return "?"


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
