"""Periodic jobs (app.jobs.register_periodic): no arguments, commit their own work, idempotent."""
from __future__ import annotations

import logging

from app.db import commit, db, rollback
from app.notifications import service
from app.webhooks import service as webhooks

log = logging.getLogger(__name__)


def scan_deadlines_job() -> tuple[int, int]:
    """Tell people about work past its warning time or deadline (each item once)."""
    try:
        counts = service.scan_deadlines()
        commit()
        if any(counts):
            log.info("deadline notifications: %d near due, %d overdue", *counts)
        return counts
    except Exception:
        rollback()
        raise
    finally:
        db.session.remove()


def retry_webhooks_job() -> int:
    """Send webhook deliveries whose next attempt is due."""
    try:
        return webhooks.retry_due()
    except Exception:
        rollback()
        raise
    finally:
        db.session.remove()
