"""Periodic job: the monthly follow-up (每月回访) of last month's resolutions.

Registered with app.jobs.register_periodic to run daily. It writes (or refreshes, until a
supervisor has called the community back) one record per community for the previous month,
so supervisors have the list well before the 20th. Idempotent; commits its own work.
"""
from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from app.db import commit, rollback
from app.disclosure import service

log = logging.getLogger(__name__)

JOB_NAME = "disclosure_monthly_followup"
EVERY_SECONDS = 24 * 3600


def monthly_followup() -> int:
    at = service.now()
    month = service.previous_month(at)
    for attempt in (1, 2):
        try:
            changed = service.generate_followups(month, at=at)
            commit()
            break
        except IntegrityError:
            # Another worker inserted the same community-month first: run again, it updates.
            rollback()
            if attempt == 2:
                raise
        except Exception:
            rollback()
            raise
    if changed:
        log.info("monthly follow-up %s: %d community record(s) written", month, changed)
    return changed
