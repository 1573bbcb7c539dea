"""Webhooks: every case event is POSTed, signed, to each active endpoint that wants its kind.

A case step adds one delivery row per matching endpoint with a single INSERT … SELECT (in
the step's transaction, so a rolled-back step sends nothing); after commit a follow-up job
(app.queue.defer) sends them. A failed attempt is retried with backoff
(WEBHOOK_BACKOFF_SECONDS) by the periodic job ``webhooks-retry`` until it succeeds or
WEBHOOK_MAX_ATTEMPTS is reached, then it is recorded as failed. Every attempt's status code
and error is kept on the delivery row.

What is sent (no personal data — no names, phones or form data)::

    {"kind": "task_completed", "case": "SJ-2026-000001", "seq": 3, "hash": "…", "at": "…",
     "role": "community_staff", "process": "grid_quick", "task": "review", "task_name": "社区研判"}

Headers: ``X-Gridcase-Event`` (kind), ``X-Gridcase-Delivery`` (delivery id; retries repeat
it), ``X-Gridcase-Timestamp`` (Unix seconds), ``X-Gridcase-Signature``
(``sha256=`` + hex HMAC-SHA256 with the endpoint's secret over ``timestamp + "." + body``).
A receiver recomputes the HMAC over the raw body, compares in constant time, and refuses
timestamps more than a few minutes old.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import datetime, timedelta
from typing import Iterable
from urllib.parse import urlsplit

import httpx
from flask import current_app
from sqlalchemy import Integer, String, Text, bindparam, literal, or_, select, update

from app.db import db
from app.errors import InvalidInput, NotFound
from app.timeutil import UTCDateTime, utcnow
from app.webhooks.models import (
    DELIVERY_DELIVERED, DELIVERY_FAILED, DELIVERY_PENDING, WebhookDelivery, WebhookEndpoint,
)

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Gridcase-Signature"
TIMESTAMP_HEADER = "X-Gridcase-Timestamp"
EVENT_HEADER = "X-Gridcase-Event"
DELIVERY_HEADER = "X-Gridcase-Delivery"
LEASE_SECONDS = 120   # a delivery being sent is not picked up again for this long


def sign(secret: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: str, signature: str, *, tolerance_seconds: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does (also used by the tests)."""
    try:
        age = abs((now or time.time()) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance_seconds and hmac.compare_digest(sign(secret, timestamp, body), signature or "")


# -- endpoints ------------------------------------------------------------------
def add_endpoint(url: str, *, kinds: Iterable[str] = (), secret: str | None = None, description: str = "") -> WebhookEndpoint:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("the URL must start with http:// or https://", code="invalid_url",
                           fields={"url": ["must be an http(s) URL"]})
    clean = sorted({k.strip() for k in kinds if k and k.strip()})
    if any(not k.replace("_", "").isalnum() for k in clean):
        raise InvalidInput("event kinds are identifiers such as task_completed", code="invalid_kinds",
                           fields={"kinds": ["identifiers such as task_completed"]})
    endpoint = WebhookEndpoint(
        url=url, secret=secret or secrets.token_urlsafe(32), kinds=("," + ",".join(clean) + ",") if clean else "",
        active=True, description=description[:200],
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook {endpoint_id} does not exist")
    return endpoint


def remove_endpoint(endpoint_id: int) -> None:
    """Deactivate (deliveries stay in the log)."""
    get_endpoint(endpoint_id).active = False


def deliveries(*, endpoint_id: int | None = None, limit: int = 100) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    return list(db.session.scalars(query))


# -- recording (history.EVENT_HOOKS) ---------------------------------------------
def body_of(case, event) -> str:
    payload = event.payload or {}
    document = {
        "kind": event.kind,
        "case": case.reference,
        "seq": event.seq,
        "hash": event.hash,
        "at": event.at.isoformat(),
        "role": event.role,
        "process": case.process_version.process_id if case.process_version is not None else None,
        "task": payload.get("task"),
        "task_name": payload.get("name"),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


_INSERT = None


def _delivery_insert():
    """The INSERT … SELECT, built once per process (bind parameters only): a step pays for
    one statement, and nothing else, when no endpoint is configured."""
    global _INSERT
    if _INSERT is None:
        endpoint = WebhookEndpoint.__table__
        query = select(
            endpoint.c.id, bindparam("reference", type_=String), bindparam("seq", type_=Integer),
            bindparam("kind", type_=String), bindparam("body", type_=Text), literal(DELIVERY_PENDING), literal(0),
            bindparam("at", type_=UTCDateTime), bindparam("next_at", type_=UTCDateTime),
        ).where(
            endpoint.c.active.is_(True),
            or_(endpoint.c.kinds == "", endpoint.c.kinds.like(bindparam("pattern", type_=String))),
        )
        # RETURNING, not rowcount: with bind parameters the PostgreSQL driver reports rowcount -1.
        _INSERT = WebhookDelivery.__table__.insert().from_select(
            ["endpoint_id", "case_reference", "seq", "event_kind", "body", "status", "attempts", "created_at",
             "next_attempt_at"], query,
        ).returning(WebhookDelivery.__table__.c.id)
    return _INSERT


def on_event(case, event) -> None:
    """One INSERT … SELECT of a delivery per active endpoint that wants this kind."""
    created = db.session.execute(_delivery_insert(), {
        "reference": case.reference, "seq": event.seq, "kind": event.kind, "body": body_of(case, event),
        "at": event.at, "next_at": event.at, "pattern": f"%,{event.kind},%",
    }).first()
    if created is not None:
        from app import queue

        queue.defer("app.webhooks.service.deliver_event_job", case.reference, event.seq,
                    job_id=f"webhook-{case.reference}-{event.seq}")


# -- sending ----------------------------------------------------------------------
def _claim(delivery_id: int, now: datetime) -> bool:
    """Take a lease on a due pending delivery; False when another sender has it."""
    result = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == DELIVERY_PENDING,
               or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now))
        .values(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def attempt(delivery_id: int, *, now: datetime | None = None) -> str | None:
    """Send one delivery once (commits). Returns its status afterwards, None if not ours to send."""
    from app.db import commit, rollback

    now = now or utcnow()
    if not _claim(delivery_id, now):
        rollback()
        return None
    delivery = db.session.get(WebhookDelivery, delivery_id)
    endpoint = delivery.endpoint
    url, secret, body, kind = endpoint.url, endpoint.secret, delivery.body, delivery.event_kind
    commit()  # the lease is visible to other senders while we wait for the receiver
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Gridcase-Webhook/1",
        EVENT_HEADER: kind,
        DELIVERY_HEADER: str(delivery_id),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    status_code, error = None, None
    try:
        response = httpx.post(url, content=body.encode("utf-8"), headers=headers,
                              timeout=current_app.config["WEBHOOK_TIMEOUT_SECONDS"], follow_redirects=False)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    delivery.attempts += 1
    delivery.last_status_code = status_code
    finished = utcnow()
    if error is None:
        delivery.status, delivery.delivered_at, delivery.last_error, delivery.next_attempt_at = (
            DELIVERY_DELIVERED, finished, None, None)
    else:
        delivery.last_error = error
        backoff = current_app.config["WEBHOOK_BACKOFF_SECONDS"]
        if delivery.attempts >= current_app.config["WEBHOOK_MAX_ATTEMPTS"]:
            delivery.status, delivery.next_attempt_at = DELIVERY_FAILED, None
            log.warning("webhook delivery %s to %s failed for good: %s", delivery_id, url, error)
        else:
            wait = backoff[min(delivery.attempts - 1, len(backoff) - 1)] if backoff else 60
            delivery.next_attempt_at = finished + timedelta(seconds=wait)
    status = delivery.status
    try:
        commit()
    except Exception:
        rollback()
        raise
    return status


def deliver_event_job(case_reference: str, seq: int) -> int:
    """Follow-up job: send every pending delivery of one case event. Idempotent."""
    try:
        ids = list(db.session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.case_reference == case_reference,
                                             WebhookDelivery.seq == seq, WebhookDelivery.status == DELIVERY_PENDING)
        ))
        for delivery_id in ids:
            attempt(delivery_id)
        return len(ids)
    finally:
        db.session.remove()


def retry_due(now: datetime | None = None, limit: int = 200) -> int:
    """Periodic job: send pending deliveries whose next attempt is due (retries, and any
    whose follow-up job was lost). Returns how many were attempted."""
    from app.db import rollback

    now = now or utcnow()
    ids = list(db.session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == DELIVERY_PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at).limit(limit)
    ))
    rollback()
    done = 0
    for delivery_id in ids:
        if attempt(delivery_id, now=now) is not None:
            done += 1
    return done
