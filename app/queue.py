"""The job queue: rq on Redis when REDIS_URL is set, in-process otherwise.

Jobs are referenced by dotted name and take only ids and primitives; they
re-load what they need and are idempotent, so a job that runs twice, late, or
never (the sweep catches up) does no harm. Enqueueing happens only after the
transaction that made the job necessary has committed (see app.db.after_commit).

``gridcase worker`` runs :func:`run_worker`: an rq worker in the app context that
forks a work horse per job (the horse never reuses the parent's pooled database
connections), enqueues the registered periodic jobs (app.jobs.PERIODIC_JOBS) when
their period is due — one claim per period in Redis, so several workers do not
each run them — keeps rq's scheduler (jobs at a due time) alive, finishes the
current job on SIGTERM, and starts again when Redis comes back after an outage.
"""
from __future__ import annotations

import collections
import logging
import re
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from app.db import db

log = logging.getLogger(__name__)

QUEUE_NAME = "gridcase"
# Jobs due at a given time (timer nudges, the timer sweep) have a queue of their own that
# workers empty first, so a timer never waits behind a backlog of follow-up jobs.
TIMER_QUEUE_NAME = "gridcase-timers"
QUEUE_NAMES = (TIMER_QUEUE_NAME, QUEUE_NAME)
PERIODIC_CLAIM_KEY = "gridcase:periodic:claim:{}"


def redis_connection() -> Redis | None:
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    connections = current_app.extensions.setdefault("gridcase_redis", {})
    if url not in connections:
        connections[url] = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    return connections[url]


def job_queue(name: str = QUEUE_NAME) -> Queue | None:
    connection = redis_connection()
    if connection is None:
        return None
    return Queue(name, connection=connection, serializer=JSONSerializer)


TIMER_RETRY = Retry(max=3, interval=[5, 30, 120])


def enqueue_at(when: datetime, func: str, *args, job_id: str, case: str | None = None) -> None:
    """Schedule ``func(*args)`` at ``when``. Without Redis this is a no-op: the
    in-process sweeper finds due work in the database. A Redis failure is logged
    and swallowed for the same reason — the database still holds the truth.
    ``case`` (a case reference) labels the job in logs and on the admin page."""
    queue = job_queue(TIMER_QUEUE_NAME)
    if queue is None:
        return
    # rq's scheduler keeps whole seconds (it truncates): round up, or the job runs just
    # before the timer is due, finds nothing to fire, and the timer waits for the sweep.
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    try:
        queue.enqueue_at(
            when, func, *args, job_id=job_id, retry=TIMER_RETRY, description=_describe(func, args, case),
            meta={"case": case} if case else None,
        )
    except RedisError as exc:
        log.warning("could not schedule %s %s (case %s) on Redis (%s); the sweep will pick it up",
                    func, args, case or "-", exc)


FOLLOW_UP_RETRY = Retry(max=5, interval=[10, 60, 300, 900, 3600])


def defer(func: str, *args, job_id: str | None = None, case: str | None = None) -> None:
    """Run the follow-up job ``func(*args)`` once the current transaction commits.

    With Redis it goes on the rq queue (retried with backoff: 10 s, 1 min, 5 min,
    15 min, 1 h; then it stays in rq's failed job registry, shown on /admin/jobs).
    Without Redis — or when Redis refuses it — it runs in a background thread of
    this process with its own app context, so the request that caused it never
    waits for it. Arguments must be ids and primitives; ``case`` (a case reference)
    labels the job in logs and on the admin page.
    """
    from app.db import after_commit

    app = current_app._get_current_object()
    after_commit(lambda: _dispatch(app, func, args, job_id, case))


def _describe(func: str, args: tuple, case: str | None) -> str:
    return f"{func}{args}" + (f" case {case}" if case else "")


def _dispatch(app, func: str, args: tuple, job_id: str | None, case: str | None = None) -> None:
    with app.app_context():
        queue = job_queue()
        if queue is not None:
            try:
                queue.enqueue(func, *args, job_id=job_id, retry=FOLLOW_UP_RETRY,
                              description=_describe(func, args, case), meta={"case": case} if case else None)
                return
            except RedisError as exc:
                log.warning("could not enqueue %s %s (case %s) on Redis (%s); running it in-process",
                            func, args, case or "-", exc)
    _in_process_executor().submit(_run_in_process, app, func, args, case)


_EXECUTOR = None
# Embedded mode: what the in-process jobs did, for the admin page (this process only).
IN_PROCESS = {"done": 0, "failed": 0, "running": 0}
IN_PROCESS_FAILURES: collections.deque = collections.deque(maxlen=50)
_IN_PROCESS_LOCK = threading.Lock()


def _in_process_executor():
    global _EXECUTOR
    if _EXECUTOR is None:
        from concurrent.futures import ThreadPoolExecutor

        _EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gridcase-job")
    return _EXECUTOR


def _run_in_process(app, func: str, args: tuple, case: str | None = None) -> None:
    from app.jobs import resolve

    with _IN_PROCESS_LOCK:
        IN_PROCESS["running"] += 1
    outcome = "done"
    with app.app_context():
        try:
            resolve(func)(*args)
        except Exception as exc:
            outcome = "failed"
            log.exception("in-process job %s%s (case %s) failed", func, args, case or "-")
            IN_PROCESS_FAILURES.appendleft({
                "func": func, "args": list(args), "case": case, "error": f"{type(exc).__name__}: {exc}",
                "at": datetime.now(timezone.utc),
            })
        finally:
            db.session.remove()
            with _IN_PROCESS_LOCK:
                IN_PROCESS["running"] -= 1
                IN_PROCESS[outcome] += 1


# -- the worker ----------------------------------------------------------------------------
def _job_id_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def make_worker(app, *, name: str | None = None, tick_seconds: float = 1.0, periodic: bool = True):
    """An rq worker bound to this app: each job runs in the app context, in a forked
    work horse that never reuses the parent's pooled database connections. Between
    jobs (every ``tick_seconds`` when idle) it enqueues due periodic jobs and restarts
    rq's scheduler if it died (e.g. when Redis went away)."""
    from rq.worker import Worker

    from app.jobs import PERIODIC_JOBS, TIMER_SWEEP, interval_of

    class GridcaseWorker(Worker):
        _next_tick = 0.0
        _next_scheduler_check = 0.0

        @property
        def dequeue_timeout(self) -> int:
            # Wake up regularly, so periodic jobs are enqueued on time even when idle.
            return max(1, int(tick_seconds))

        @property
        def should_run_maintenance_tasks(self) -> bool:
            return super().should_run_maintenance_tasks or time.monotonic() >= self._next_tick

        def run_maintenance_tasks(self) -> None:
            if Worker.should_run_maintenance_tasks.fget(self):  # rq's own: registries, scheduler
                super().run_maintenance_tasks()
            self._next_tick = time.monotonic() + tick_seconds
            if periodic:  # a long-running worker (not --burst)
                self._keep_scheduler_alive()
                self._enqueue_due_periodic_jobs()

        def _keep_scheduler_alive(self) -> None:
            if self.scheduler is None or time.monotonic() < self._next_scheduler_check:
                return
            if self._stop_requested or self._shutdown_requested_date:  # stopping: rq stopped it on purpose
                return
            self._next_scheduler_check = time.monotonic() + 5
            process = self.scheduler._process
            if process is None or not process.is_alive():
                self.scheduler.acquire_locks(auto_start=True)

        def _enqueue_due_periodic_jobs(self) -> None:
            """Whoever claims a job's period first (SET NX with the period as expiry)
            enqueues it; the others skip it until the claim expires."""
            with app.app_context():
                for job_name, job in list(PERIODIC_JOBS.items()):
                    seconds = interval_of(job, app.config)
                    if seconds is None or not self.connection.set(PERIODIC_CLAIM_KEY.format(job_name), self.name, nx=True, ex=seconds):
                        continue
                    queue_name = TIMER_QUEUE_NAME if job_name == TIMER_SWEEP else QUEUE_NAME
                    Queue(queue_name, connection=self.connection, serializer=JSONSerializer).enqueue(
                        "app.jobs.run_periodic_job", job_name, at_front=True,
                        job_id=f"periodic-{_job_id_part(job_name)}-{int(time.time())}",
                        job_timeout=max(300, seconds * 2), result_ttl=3600, failure_ttl=7 * 24 * 3600,
                        description=f"periodic {job_name} ({job.func})",
                    )

        def subscribe(self) -> None:
            """No pub/sub command channel: workers are stopped with signals. rq's listener
            thread blocks in a 60-second read, and closing it at shutdown could hold the
            process for that long after its last job."""

        def main_work_horse(self, job, queue):
            db.engine.dispose(close=False)  # the child must open its own connections
            super().main_work_horse(job, queue)

        def handle_exception(self, job, *exc_info):
            super().handle_exception(job, *exc_info)
            case = (job.meta or {}).get("case") or "-"
            log.error("job %s (%s) for case %s failed: %s", job.id, job.func_name, case,
                      f"{exc_info[0].__name__}: {exc_info[1]}" if exc_info and exc_info[0] else "?")

    connection = redis_connection()
    if connection is None:
        raise RuntimeError("REDIS_URL is not configured")
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUE_NAMES]
    return GridcaseWorker(queues, connection=connection, serializer=JSONSerializer, name=name,
                          maintenance_interval=60)


def run_worker(app, *, burst: bool = False, retry_seconds: float = 2.0) -> int:
    """Run rq workers until told to stop; returns the exit status.

    SIGTERM/SIGINT: rq finishes the job in hand, then the worker stops (a second
    signal kills the job). When the worker loop ends for any other reason — Redis
    went away, was restarted or flushed — a new worker starts once Redis answers
    again; nothing is lost meanwhile, because the database holds the truth and the
    periodic sweep fires whatever fell due."""
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()
        raise SystemExit(0)

    while True:
        worker = None
        try:
            worker = make_worker(app, periodic=not burst)  # a burst worker only empties the queue
            worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
        except RedisError as exc:
            log.error("worker could not talk to Redis (%s); retrying in %.0f s", exc, retry_seconds)
        except SystemExit:
            stop.set()
        if burst or stop.is_set() or (worker is not None and (worker._stop_requested or worker._shutdown_requested_date)):
            return 0
        log.warning("worker loop ended without a stop request (Redis outage?); starting a new worker")
        previous = (signal.signal(signal.SIGTERM, request_stop), signal.signal(signal.SIGINT, request_stop))
        try:
            _wait_for_redis(app, stop, retry_seconds)
        except SystemExit:
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
        if stop.is_set():
            return 0


def _wait_for_redis(app, stop: threading.Event, retry_seconds: float) -> None:
    while not stop.is_set():
        try:
            redis_connection().ping()
            return
        except RedisError as exc:
            log.warning("Redis is not answering (%s); retrying in %.0f s", exc, retry_seconds)
            stop.wait(retry_seconds)
