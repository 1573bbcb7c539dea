"""Periodic job: keep the dashboard facts in step with the event log (pages also catch up)."""
from __future__ import annotations

import logging

from app.db import commit, rollback

log = logging.getLogger(__name__)


def catch_up_job() -> int:
    """Fold every case whose events moved on since its facts were written (the exact check:
    every chain head against its row). Idempotent; one commit."""
    from app.dashboard import service

    try:
        folded = service.catch_up(exact=True)
        commit()
    except Exception:
        rollback()
        raise
    if folded:
        log.info("dashboard: folded %d case(s)", folded)
    return folded
