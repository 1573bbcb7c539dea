"""The job queue: rq on Redis when REDIS_URL is set, the in-process sweeper otherwise.

Jobs are referenced by dotted name and take only ids and primitives; they
re-load what they need and are idempotent, so a job that runs twice, late, or
never (the sweeper catches up) does no harm. Enqueueing happens only after the
transaction that made the job necessary has committed (see app.db.after_commit).
"""
from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from app.db import db

log = logging.getLogger(__name__)

QUEUE_NAME = "gridcase"


def redis_connection() -> Redis | None:
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    connections = current_app.extensions.setdefault("gridcase_redis", {})
    if url not in connections:
        connections[url] = Redis.from_url(url)
    return connections[url]


def job_queue() -> Queue | None:
    connection = redis_connection()
    if connection is None:
        return None
    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)


def enqueue_at(when: datetime, func: str, *args, job_id: str) -> None:
    """Schedule ``func(*args)`` at ``when``. Without Redis this is a no-op: the
    in-process sweeper finds due work in the database. A Redis failure is logged
    and swallowed for the same reason — the database still holds the truth."""
    queue = job_queue()
    if queue is None:
        return
    try:
        queue.enqueue_at(
            when, func, *args, job_id=job_id, retry=Retry(max=3, interval=[5, 30, 120]),
            description=f"{func}{args}",
        )
    except RedisError as exc:
        log.warning("could not schedule %s %s on Redis (%s); the sweeper will pick it up", func, args, exc)


FOLLOW_UP_RETRY = Retry(max=5, interval=[10, 60, 300, 900, 3600])


def defer(func: str, *args, job_id: str | None = None) -> None:
    """Run the follow-up job ``func(*args)`` once the current transaction commits.

    With Redis it goes on the rq queue (retried with backoff; failures end in rq's
    failed job registry). Without Redis — or when Redis refuses it — it runs in a
    background thread of this process with its own app context, so the request
    that caused it never waits for it. Arguments must be ids and primitives.
    """
    from app.db import after_commit

    app = current_app._get_current_object()
    after_commit(lambda: _dispatch(app, func, args, job_id))


def _dispatch(app, func: str, args: tuple, job_id: str | None) -> None:
    with app.app_context():
        queue = job_queue()
        if queue is not None:
            try:
                queue.enqueue(func, *args, job_id=job_id, retry=FOLLOW_UP_RETRY, description=f"{func}{args}")
                return
            except RedisError as exc:
                log.warning("could not enqueue %s %s on Redis (%s); running it in-process", func, args, exc)
    _in_process_executor().submit(_run_in_process, app, func, args)


_EXECUTOR = None


def _in_process_executor():
    global _EXECUTOR
    if _EXECUTOR is None:
        from concurrent.futures import ThreadPoolExecutor

        _EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gridcase-job")
    return _EXECUTOR


def _run_in_process(app, func: str, args: tuple) -> None:
    import importlib

    module_name, _, name = func.rpartition(".")
    with app.app_context():
        try:
            getattr(importlib.import_module(module_name), name)(*args)
        except Exception:
            log.exception("in-process job %s%s failed", func, args)
        finally:
            db.session.remove()


def make_worker(app, *, name: str | None = None):
    """An rq worker bound to this app: each job runs in the app context, in a forked
    work horse that never reuses the parent's pooled database connections."""
    from rq.worker import Worker

    class GridcaseWorker(Worker):
        def main_work_horse(self, job, queue):
            db.engine.dispose(close=False)  # the child must open its own connections
            super().main_work_horse(job, queue)

    connection = redis_connection()
    if connection is None:
        raise RuntimeError("REDIS_URL is not configured")
    queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    return GridcaseWorker([queue], connection=connection, serializer=JSONSerializer, name=name)
