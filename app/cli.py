"""The ``gridcase`` command: a Flask CLI group (``flask --app app`` works too)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from workflows.definitions import load_folder


def main() -> None:
    from app import create_app

    cli = FlaskGroup(create_app=lambda: create_app(), help="Gridcase: BPMN case management for grassroots governance.")
    cli.main()


def register_cli(app: Flask) -> None:
    app.cli.add_command(process_group)
    app.cli.add_command(user_group)
    app.cli.add_command(timers_group)
    app.cli.add_command(demo_group)
    app.cli.add_command(setup_command)
    app.cli.add_command(serve_command)
    app.cli.add_command(worker_command)
    from app.pages import optional_module

    # Features with their own commands expose ``commands`` (a list of click commands) in app/<feature>/cli.py.
    for name in FEATURE_CLIS:
        module = optional_module(name)
        for command in getattr(module, "commands", []) if module is not None else []:
            app.cli.add_command(command)


FEATURE_CLIS = ("app.notifications.cli", "app.audit.cli", "app.library.cli", "app.dashboard.cli", "app.disclosure.cli")


# -- process ------------------------------------------------------------------
@click.group("process", help="Validate, deploy and list process definitions.")
def process_group():
    pass


@process_group.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@with_appcontext
def process_validate(paths):
    """Validate BPMN/DMN/form files under PATHS (folders). Exit 1 and one line per error, or
    exit 0 with a summary per process."""
    from app.runtime import runtime

    failed = False
    for path in paths:
        result = load_folder(path, runtime().roles)
        failed = _echo_issues(path, result.issues) or failed
        if not result.issues:
            for definition in result.definitions:
                click.echo(_summary(definition))
    sys.exit(1 if failed else 0)


def _echo_issues(path, issues) -> bool:
    """One line per issue, prefixed with the folder; True when there were any."""
    for issue in issues:
        click.echo(f"{path}/{issue}" if issue.file else f"{path}: {issue}")
    return bool(issues)


def _summary(definition) -> str:
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    task_specs = [t for spec in (definition.spec, *definition.subprocess_specs.values()) for t in spec.task_specs.values()]
    user_tasks = sum(1 for t in task_specs if getattr(t, "manual", False))
    timers = sum(1 for t in task_specs if isinstance(getattr(t, "event_definition", None), TimerEventDefinition))
    return (
        f"OK {definition.process_id} ({definition.name}): {user_tasks} user tasks, {timers} timers, "
        f"{len(definition.forms)} forms, {len(definition.files)} files, roles {', '.join(definition.roles) or '-'}; "
        f"hash {definition.content_hash[:12]}"
    )


@process_group.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--require-full-coverage", is_flag=True,
              help="also exit 1 when a branch, boundary or end event is missed, or a process has no scenarios")
@with_appcontext
def process_test(paths, require_full_coverage):
    """Run the scenarios/*.json under PATHS (folders) and report branch coverage. Exit 1 when a
    scenario fails or a definition does not load."""
    from app.runtime import runtime
    from workflows.scenarios import discover, run_suite

    failed = False
    for path in paths:
        result = load_folder(path, runtime().roles)
        failed = _echo_issues(path, result.issues) or failed
        report = run_suite(discover(path), result.definitions, runtime().engine)
        for line in report.lines():
            click.echo(line)
        failed = failed or not report.passed or (require_full_coverage and not report.full_coverage)
    sys.exit(1 if failed else 0)


@process_group.command("deploy")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--note", help="what changed, recorded with each new version")
@with_appcontext
def process_deploy(path, note):
    """Deploy every process under PATH (default: the configured library) whose content changed."""
    from app.db import commit
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    path = path or Path(current_app.config["PROCESS_LIBRARY"])
    report = deploy_folder(path, runtime(), deployed_by=os.environ.get("USER", "cli"), note=note)
    if _echo_issues(path, report.issues):
        click.echo("nothing deployed: fix the errors above", err=True)
        sys.exit(1)
    commit()
    for version in report.deployed:
        click.echo(f"deployed {version.process_id} v{version.version} ({version.content_hash[:12]})")
    for version in report.unchanged:
        click.echo(f"unchanged {version.process_id} v{version.version}")


@process_group.command("list")
@with_appcontext
def process_list():
    """List deployed processes (newest version of each)."""
    from app.processes.service import latest_versions

    for version in latest_versions():
        click.echo(f"{version.process_id}\tv{version.version}\t{version.name}\t{version.content_hash[:12]}")


# -- users --------------------------------------------------------------------
@click.group("user", help="Manage users, roles and API tokens.")
def user_group():
    pass


@user_group.command("token")
@click.argument("username")
@click.option("--name", default="cli", help="what the token is for")
@with_appcontext
def user_token(username, name):
    """Issue an API token for USERNAME (shown once)."""
    from app.db import commit
    from app.people import service as people

    token = people.issue_token(people.user_by_username(username), name)
    commit()
    click.echo(token)


# -- timers -------------------------------------------------------------------
@click.group("timers", help="Fire due timers.")
def timers_group():
    pass


@timers_group.command("fire-due")
@with_appcontext
def timers_fire_due():
    """Fire every timer that is due now (one transaction per case)."""
    from app.jobs import fire_due_timers

    fired = fire_due_timers()
    click.echo(f"fired timers in {fired} case(s)")


# -- demo / setup / serve -----------------------------------------------------
@click.group("demo", help="Demo data.")
def demo_group():
    pass


@demo_group.command("seed")
@with_appcontext
def demo_seed():
    """Create the demo street, grids, users and cases (only into an empty database)."""
    from app.demo import seed

    seed(echo=click.echo)


@click.command("setup")
@click.option("--demo/--no-demo", default=True, help="seed demo data into an empty database")
@with_appcontext
def setup_command(demo):
    """Migrate the database, deploy the process library and (optionally) seed the demo."""
    from flask_migrate import upgrade

    from app.db import commit
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    upgrade(directory=current_app.extensions["migrate"].directory)
    report = deploy_folder(current_app.config["PROCESS_LIBRARY"], runtime(), deployed_by="setup")
    if report.issues:
        for issue in report.issues:
            click.echo(f"  {issue}", err=True)
        raise click.ClickException("the process library has errors; nothing was deployed")
    commit()
    for version in report.deployed:
        click.echo(f"deployed {version.process_id} v{version.version}")
    if demo:
        from app.demo import seed

        seed(echo=click.echo)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@with_appcontext
def serve_command(host, port, threads):
    """Serve with waitress (a production WSGI server). Without REDIS_URL, a background
    sweeper in this process fires due timers and runs the other periodic jobs."""
    import waitress

    app = current_app._get_current_object()
    if not app.config.get("REDIS_URL"):
        from app.jobs import start_sweeper

        start_sweeper(app)
    click.echo(f"Gridcase on http://{host}:{port}/  (API docs: http://{host}:{port}/api/docs)")
    waitress.serve(app, host=host, port=port, threads=threads)


@click.command("worker")
@click.option("--burst", is_flag=True, help="work until the queue is empty, then stop")
@with_appcontext
def worker_command(burst):
    """Run an rq worker (needs REDIS_URL) with the app context. It runs timer jobs and
    follow-up jobs, enqueues the periodic jobs (the timer sweep among them) when due,
    finishes the current job on SIGTERM and reconnects after a Redis outage."""
    from app.queue import run_worker

    app = current_app._get_current_object()
    if not app.config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set: in embedded mode `gridcase serve` fires timers itself")
    sys.exit(run_worker(app, burst=burst))
