"""Wiring: notifications and webhooks follow case steps; their periodic jobs."""
from __future__ import annotations

from app.cases import history
from app.cases import service as cases
from app.jobs import register_periodic
from app.notifications import service as notifications
from app.webhooks import service as webhooks


def install(app) -> None:
    if notifications.on_work_ready not in cases.WORK_READY_HOOKS:
        cases.WORK_READY_HOOKS.append(notifications.on_work_ready)
    for hook in (notifications.on_event, webhooks.on_event):
        if hook not in history.EVENT_HOOKS:
            history.EVENT_HOOKS.append(hook)
    register_periodic("notify-deadlines", "app.notifications.jobs.scan_deadlines_job",
                      app.config["DEADLINE_SCAN_SECONDS"])
    register_periodic("webhooks-retry", "app.notifications.jobs.retry_webhooks_job", 30)
