"""``gridcase disclosure followup [--month 2026-11]``: run the monthly follow-up by hand."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext


@click.group("disclosure", help="Public disclosure board and the monthly follow-up of resolutions.")
def disclosure_group():
    pass


@disclosure_group.command("followup")
@click.option("--month", help="Month whose resolutions to follow up (YYYY-MM); default: last month.")
@with_appcontext
def followup_command(month):
    """Write the follow-up record of each community for MONTH (idempotent)."""
    from app.db import commit, rollback
    from app.disclosure import service
    from app.errors import InvalidInput

    at = service.now()
    try:
        month = service.parse_month(month) or service.previous_month(at)
    except InvalidInput:
        click.echo(f"error: --month must look like 2026-11, got {month!r}", err=True)
        sys.exit(2)
    try:
        changed = service.generate_followups(month, at=at)
        commit()
    except Exception:
        rollback()
        raise
    click.echo(f"follow-up {month}: {changed} community record(s) written (due by {service.due_date(month, service.settings()['followup_day'])})")


commands = [disclosure_group]
