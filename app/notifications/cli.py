"""gridcase webhook add/list/remove/deliveries; gridcase notifications scan."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.db import commit


@click.group("webhook", help="Webhook endpoints that receive signed case events.")
def webhook_group():
    pass


@webhook_group.command("add")
@click.argument("url")
@click.option("--kind", "kinds", multiple=True, help="only these event kinds (repeatable); default: all")
@click.option("--secret", default=None, help="shared secret; default: a random one, printed once")
@click.option("--description", default="")
@with_appcontext
def webhook_add(url, kinds, secret, description):
    """Add an endpoint; prints its id and secret."""
    from app.errors import InvalidInput
    from app.webhooks import service

    try:
        endpoint = service.add_endpoint(url, kinds=kinds, secret=secret, description=description)
        endpoint_id, shown = endpoint.id, endpoint.secret
        commit()
    except InvalidInput as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"webhook {endpoint_id} added; secret (shown once): {shown}")


@webhook_group.command("list")
@with_appcontext
def webhook_list():
    """List endpoints."""
    from app.webhooks import service

    for e in service.endpoints():
        click.echo(f"{e.id}\t{'active' if e.active else 'inactive'}\t{e.url}\t{','.join(e.kind_list) or '*'}\t{e.description}")


@webhook_group.command("remove")
@click.argument("endpoint_id", type=int)
@with_appcontext
def webhook_remove(endpoint_id):
    """Deactivate an endpoint (its delivery log stays)."""
    from app.errors import NotFound
    from app.webhooks import service

    try:
        service.remove_endpoint(endpoint_id)
        commit()
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"webhook {endpoint_id} removed")


@webhook_group.command("deliveries")
@click.option("--endpoint", "endpoint_id", type=int, default=None)
@click.option("--limit", type=int, default=50)
@with_appcontext
def webhook_deliveries(endpoint_id, limit):
    """The delivery log: status, attempts, last status code and error."""
    from app.webhooks import service

    for d in service.deliveries(endpoint_id=endpoint_id, limit=limit):
        click.echo(f"{d.id}\t{d.endpoint_id}\t{d.case_reference}#{d.seq}\t{d.event_kind}\t{d.status}\t"
                   f"attempts={d.attempts}\tcode={d.last_status_code or ''}\t{d.last_error or ''}")


@click.group("notifications", help="In-app notifications.")
def notifications_group():
    pass


@notifications_group.command("scan")
@with_appcontext
def notifications_scan():
    """Tell people about work past its warning time or deadline now (the periodic job does this too)."""
    from app.notifications.jobs import scan_deadlines_job

    near, overdue = scan_deadlines_job()
    click.echo(f"{near} near due, {overdue} overdue")


commands = [webhook_group, notifications_group]
