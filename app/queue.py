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
