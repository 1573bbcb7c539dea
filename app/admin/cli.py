"""``gridcase admin …``: the grid tree, people, roles and departments from the command line,
including the CSV imports the admin pages offer. Every command commits once, or not at all."""
from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

import click
from flask.cli import with_appcontext
from flask_babel import gettext as _

LANGUAGE_OPTION = click.option(
    "--language", default="en", show_default=True, type=click.Choice(["en", "zh_CN"]),
    help="language of the messages",
)


def _in_language(command):
    """Run the command with an app context and messages in --language (no request here)."""

    @wraps(command)
    def wrapper(*args, language, **kwargs):
        from flask_babel import force_locale

        with force_locale(language):
            return command(*args, **kwargs)

    return LANGUAGE_OPTION(with_appcontext(wrapper))


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _run(action):
    """Run a service call; on invalid input print every message and exit 1 (nothing committed)."""
    from app.db import commit, rollback
    from app.errors import DomainError

    try:
        result = action()
    except DomainError as exc:
        rollback()
        lines = [f"{name}: {message}" for name, messages in exc.fields.items() for message in messages] or [exc.message]
        _fail("\n".join(lines))
    commit()
    return result


@click.group("admin", help="Administer grids, people, roles and departments; import them from CSV.")
def admin_group():
    pass


# -- CSV import -----------------------------------------------------------------------
def _import(kind: str, path: Path, dry_run: bool) -> None:
    from app.admin import service
    from app.db import commit, rollback

    if path.stat().st_size > service.MAX_IMPORT_BYTES:
        _fail(f"{path}: " + str(service.ImportIssue(None, None, _("The file is larger than 2 MB: split it into several files."))))
    run = service.import_grids if kind == "grids" else service.import_users
    report = run(path.read_bytes(), dry_run=dry_run)
    if not report.ok:
        rollback()
        for issue in report.issues:
            click.echo(f"{path.name}: {issue}", err=True)
        _fail(_("Nothing was imported: %(count)d problem(s).", count=len(report.issues)))
    if dry_run:
        rollback()
        click.echo(_("Checked, nothing imported: %(summary)s", summary=report.summary()))
        return
    commit()
    click.echo(report.summary())
    if report.passwords:
        click.echo(_("Generated passwords (shown only this once):"))
        for username, password in report.passwords.items():
            click.echo(f"{username}\t{password}")


@admin_group.command("import-grids")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="check every row, import nothing")
@_in_language
def import_grids(file, dry_run):
    """Import grid nodes from FILE: CSV (UTF-8) with columns code,name,level,parent_code.
    All or nothing; re-importing updates names and levels of existing codes."""
    _import("grids", file, dry_run)


@admin_group.command("import-users")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="check every row, import nothing")
@_in_language
def import_users(file, dry_run):
    """Import people from FILE: CSV (UTF-8) with columns username,display_name,phone,password,roles
    (roles: role@grid_code;role@grid_code). Generated passwords are printed once."""
    _import("users", file, dry_run)


# -- grids ----------------------------------------------------------------------------
@admin_group.command("grids")
@_in_language
def list_grids():
    """Print the grid tree: code, level, name, people with roles here / here and below."""
    from app.admin import service

    for row in service.grid_tree():
        click.echo(f"{'  ' * row.depth}{row.node.code}\t{row.node.level}\t{row.node.name}\t{row.users_here}/{row.users_below}")


@admin_group.command("add-grid")
@click.argument("code")
@click.argument("name")
@click.argument("level")
@click.option("--parent", "parent_code", help="code of the parent grid (none: a top-level street or district)")
@_in_language
def add_grid(code, name, level, parent_code):
    """Create grid CODE named NAME at LEVEL (district, street, community, block, grid, building)."""
    from app.admin import service

    parent = None
    if parent_code:
        parent = service.find_grid(parent_code)
        if parent is None:
            _fail(_("Unknown grid %(code)s.", code=parent_code))
    node = _run(lambda: service.create_grid(code, name, level, parent))
    click.echo(f"created {node.code}")


@admin_group.command("rename-grid")
@click.argument("code")
@click.argument("name")
@_in_language
def rename_grid(code, name):
    """Rename grid CODE to NAME."""
    from app.admin import service

    node = _grid(code)
    _run(lambda: service.rename_grid(node, name))
    click.echo(f"renamed {node.code}")


def _grid(code):
    from app.admin import service

    node = service.find_grid(code)
    if node is None:
        _fail(_("Unknown grid %(code)s.", code=code))
    return node


def _user(username):
    from app.admin import service

    user = service.find_user(username)
    if user is None:
        _fail(_("No such user."))
    return user


# -- people ---------------------------------------------------------------------------
@admin_group.command("add-user")
@click.argument("username")
@click.argument("display_name")
@click.option("--phone", default="")
@click.option("--password", help="initial password (default: generated and printed once)")
@click.option("--admin", "is_admin", is_flag=True, help="an administrator")
@click.option("--department", "department_code", help="department code")
@_in_language
def add_user(username, display_name, phone, password, is_admin, department_code):
    """Create a person."""
    from app.admin import service
    from app.people import service as people

    department = None
    if department_code:
        department = people.department_by_code(department_code)
        if department is None:
            _fail(_("Unknown department."))
    user, generated = _run(lambda: service.create_user(username, display_name, password=password, phone=phone,
                                                       is_admin=is_admin, department=department))
    click.echo(f"created {user.username}")
    if generated:
        click.echo(f"password: {generated}")


@admin_group.command("grant")
@click.argument("username")
@click.argument("role")
@click.argument("grid_code")
@_in_language
def grant(username, role, grid_code):
    """Give USERNAME the ROLE (identifier or label) at GRID_CODE and below."""
    from app.admin import service
    from app.runtime import runtime

    user, node = _user(username), _grid(grid_code)
    role_id = runtime().roles.resolve(role) or role
    _run(lambda: service.grant(user, role_id, node))
    click.echo(f"{username}: {role_id}@{grid_code}")


@admin_group.command("revoke")
@click.argument("username")
@click.argument("role")
@click.argument("grid_code")
@_in_language
def revoke(username, role, grid_code):
    """Take ROLE at GRID_CODE away from USERNAME."""
    from app.admin import service
    from app.runtime import runtime

    user, node = _user(username), _grid(grid_code)
    role_id = runtime().roles.resolve(role) or role
    assignment = next((a for a in user.roles if a.role == role_id and a.grid_node_id == node.id), None)
    if assignment is None:
        _fail(_("This role assignment does not exist (any more)."))
    _run(lambda: service.revoke(user, assignment.id))
    click.echo(f"{username}: revoked {role_id}@{grid_code}")


@admin_group.command("deactivate")
@click.argument("username")
@_in_language
def deactivate(username):
    """Stop USERNAME from signing in or using tokens (nothing is deleted)."""
    from app.admin import service

    user = _user(username)
    _run(lambda: service.set_active(user, False))
    click.echo(f"deactivated {username}")


@admin_group.command("reactivate")
@click.argument("username")
@_in_language
def reactivate(username):
    """Let USERNAME sign in again."""
    from app.admin import service

    user = _user(username)
    _run(lambda: service.set_active(user, True))
    click.echo(f"reactivated {username}")


@admin_group.command("set-password")
@click.argument("username")
@click.option("--generate", is_flag=True, help="generate a password and print it once")
@_in_language
def set_password(username, generate):
    """Set USERNAME's password (prompted) and lift any sign-in lockout."""
    from app.admin import service

    user = _user(username)
    password = None if generate else click.prompt("password", hide_input=True, confirmation_prompt=True)
    generated = _run(lambda: service.reset_password(user, password))
    click.echo(f"password of {username} set" + (f": {generated}" if generated else ""))


# -- departments ----------------------------------------------------------------------
@admin_group.command("add-department")
@click.argument("code")
@click.argument("name")
@click.option("--level", type=click.Choice(["street", "district"]), default="street", show_default=True)
@click.option("--grid", "grid_code", help="the street or district it belongs to")
@_in_language
def add_department(code, name, level, grid_code):
    """Create a department (a unit that receives dispatched work)."""
    from app.admin import service

    node = _grid(grid_code) if grid_code else None
    department = _run(lambda: service.create_department(code, name, level, node))
    click.echo(f"created {department.code}")


@admin_group.command("set-department")
@click.argument("username")
@click.argument("department_code", required=False)
@_in_language
def set_department(username, department_code):
    """Put USERNAME in the department DEPARTMENT_CODE (none: no department)."""
    from app.admin import service
    from app.people import service as people

    user = _user(username)
    department = None
    if department_code:
        department = people.department_by_code(department_code)
        if department is None:
            _fail(_("Unknown department."))
    _run(lambda: people.update_user(user, department=department, clear_department=department is None))
    click.echo(f"{username}: department {department_code or '-'}")
