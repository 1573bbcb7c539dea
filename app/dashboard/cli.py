"""``gridcase dashboard …``: rebuild or catch up the metrics read table from the event log."""
from __future__ import annotations

import time

import click
from flask.cli import with_appcontext


@click.group("dashboard", help="Governance dashboard: the metrics read table.")
def dashboard_group():
    pass


@dashboard_group.command("rebuild")
@with_appcontext
def rebuild():
    """Delete every row of dashboard_case_facts and fold every case again from case_events."""
    from app.dashboard import facts
    from app.db import commit, rollback
    from app.runtime import runtime

    started = time.perf_counter()
    try:
        folded = facts.rebuild(runtime().calendar)
        commit()
    except Exception:
        rollback()
        raise
    click.echo(f"folded {folded} case(s) from their events in {time.perf_counter() - started:.1f} s")


@dashboard_group.command("refresh")
@with_appcontext
def refresh():
    """Fold only the cases whose events moved on since their row was written."""
    from app.dashboard.jobs import catch_up_job

    click.echo(f"folded {catch_up_job()} case(s)")


commands = [dashboard_group]
