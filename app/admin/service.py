"""Administration: the grid tree, people, roles, departments, tokens and CSV import.

Used by the admin pages and the ``gridcase admin`` commands. Like every service it
only flushes; the caller commits once. Validation messages are translated with
Flask-Babel (pages: the reader's language; CLI: ``force_locale``), and invalid input
raises :class:`~app.errors.InvalidInput` with per-field messages before anything changes.
"""
from __future__ import annotations

import csv
import io
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from flask import current_app, has_request_context
from flask_babel import force_locale, get_locale, gettext, lazy_gettext as _l
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from app.db import db
from app.errors import InvalidInput, NotFound
from app.people import service as people
from app.people.models import GRID_LEVELS, ApiToken, Department, GridNode, RoleAssignment, User
from app.runtime import runtime

# -- messages ----------------------------------------------------------------------
def _localised(produce):
    """Translate in the reader's language; outside a request (CLI, jobs, tests) the caller may
    have forced a locale, otherwise the application's default language is used."""
    if has_request_context():
        return produce()
    try:
        return produce()
    except RuntimeError:  # the locale selector needs a request
        with force_locale(current_app.config.get("BABEL_DEFAULT_LOCALE") or "zh_CN"):
            return produce()


def _(text: str, **variables) -> str:
    return _localised(lambda: gettext(text, **variables))


# -- vocabulary ------------------------------------------------------------------
LEVEL_RANK = {level: rank for rank, level in enumerate(GRID_LEVELS)}
ROOT_LEVELS = ("district", "street")
LEVEL_LABELS = {
    "district": _l("District"),
    "street": _l("Street"),
    "community": _l("Community"),
    "block": _l("Block"),
    "grid": _l("Grid"),
    "building": _l("Building"),
}
DEPARTMENT_LEVELS = ("street", "district")
DEPARTMENT_LEVEL_LABELS = {"street": _l("Street department"), "district": _l("District department")}

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
PASSWORD_MIN = 8
PASSWORD_MAX = 200
MAX_IMPORT_BYTES = 2 * 1024 * 1024
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def level_label(level: str) -> str:
    label = LEVEL_LABELS.get(level)
    return _localised(lambda: str(label)) if label is not None else level


def role_language() -> str:
    locale = _localised(get_locale)
    return "en" if locale is not None and locale.language == "en" else "zh"


def role_label(identifier: str) -> str:
    role = runtime().roles.roles.get(identifier)
    return role.label(role_language()) if role is not None else identifier


def role_choices() -> list[tuple[str, str]]:
    catalogue = runtime().roles
    return [(identifier, f"{role_label(identifier)} ({identifier})") for identifier in catalogue.identifiers()]


def mask_phone(phone: str | None) -> str:
    """138****0000: phone numbers are personal data and lists show them masked."""
    if not phone:
        return ""
    digits = phone.strip()
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 2:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)


def generate_password(length: int = 12) -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


# -- field checks shared by forms, CLI and CSV ------------------------------------
def code_problem(code: str) -> str | None:
    if not code:
        return _("Required.")
    if len(code) > 64:
        return _("At most %(n)d characters.", n=64)
    if not CODE_RE.match(code):
        return _("Use letters, digits, '-', '_' or '.' only (for example GL-01-G1).")
    return None


def name_problem(name: str) -> str | None:
    if not name:
        return _("Required.")
    if len(name) > 200:
        return _("At most %(n)d characters.", n=200)
    return None


def username_problem(username: str) -> str | None:
    if not username:
        return _("Required.")
    if len(username) < 2 or len(username) > 64:
        return _("Between %(low)d and %(high)d characters.", low=2, high=64)
    if not USERNAME_RE.match(username):
        return _("Use letters, digits, '-', '_' or '.' only.")
    return None


def phone_problem(phone: str) -> str | None:
    if phone and not PHONE_RE.match(phone):
        return _("Not a phone number (digits, optionally a leading + and spaces or dashes).")
    return None


def password_problem(password: str) -> str | None:
    if password and len(password) < PASSWORD_MIN:
        return _("At least %(n)d characters.", n=PASSWORD_MIN)
    if password and len(password) > PASSWORD_MAX:
        return _("At most %(n)d characters.", n=PASSWORD_MAX)
    return None


def level_problem(level: str, parent_level: str | None) -> str | None:
    """A child's level must be strictly below its parent's; only districts and streets are roots."""
    if level not in LEVEL_RANK:
        return _("Unknown level %(level)s: use one of %(levels)s.", level=level or "''", levels=", ".join(GRID_LEVELS))
    if parent_level is None:
        if level not in ROOT_LEVELS:
            return _("%(level)s needs a parent: only a district or a street can be at the top of the tree.",
                     level=level_label(level))
        return None
    if LEVEL_RANK[level] <= LEVEL_RANK.get(parent_level, -1):
        return _("%(level)s cannot be placed under %(parent)s: a child's level must be below its parent's "
                 "(street → community → block → grid → building).",
                 level=level_label(level), parent=level_label(parent_level))
    return None


def _refuse(fields: dict[str, str | None]) -> None:
    problems = {name: [message] for name, message in fields.items() if message}
    if problems:
        raise InvalidInput(next(iter(problems.values()))[0], fields=problems)


# -- grid tree ---------------------------------------------------------------------
def grid_or_404(node_id: int) -> GridNode:
    node = db.session.get(GridNode, node_id)
    if node is None:
        raise NotFound(_("No such grid."))
    return node


def find_grid(code: str) -> GridNode | None:
    return db.session.scalar(select(GridNode).where(GridNode.code == code))


def create_grid(code: str, name: str, level: str, parent: GridNode | None) -> GridNode:
    code, name = (code or "").strip(), (name or "").strip()
    problem = code_problem(code)
    if problem is None and find_grid(code) is not None:
        problem = _("The code %(code)s is already used.", code=code)
    _refuse({"code": problem, "name": name_problem(name), "level": level_problem(level, parent.level if parent else None)})
    return people.add_grid_node(code, name, level, parent)


def rename_grid(node: GridNode, name: str) -> GridNode:
    name = (name or "").strip()
    _refuse({"name": name_problem(name)})
    node.name = name
    return node


@dataclass(frozen=True)
class TreeRow:
    node: GridNode
    depth: int
    users_here: int    # people holding a role at this node
    users_below: int   # people holding a role at this node or anywhere below it


def grid_tree() -> list[TreeRow]:
    """Every node in tree order (children by code), with how many people hold roles there."""
    nodes = list(db.session.scalars(select(GridNode)))
    by_id = {node.id: node for node in nodes}
    children: dict[int | None, list[GridNode]] = defaultdict(list)
    for node in nodes:
        parent_id = node.parent_id if node.parent_id in by_id else None
        children[parent_id].append(node)
    holders: dict[int, set[int]] = defaultdict(set)
    for grid_node_id, user_id in db.session.execute(select(RoleAssignment.grid_node_id, RoleAssignment.user_id)):
        holders[grid_node_id].add(user_id)

    rows: list[TreeRow] = []

    def walk(node: GridNode, depth: int) -> set[int]:
        index = len(rows)
        rows.append(TreeRow(node, depth, len(holders[node.id]), 0))
        below = set(holders[node.id])
        for child in sorted(children[node.id], key=lambda n: n.code):
            below |= walk(child, depth + 1)
        rows[index] = TreeRow(node, depth, len(holders[node.id]), len(below))
        return below

    for root in sorted(children[None], key=lambda n: n.code):
        walk(root, 0)
    return rows


def holders_at(node: GridNode) -> list[RoleAssignment]:
    """Who holds which role at this very node."""
    assignments = db.session.scalars(select(RoleAssignment).where(RoleAssignment.grid_node_id == node.id))
    return sorted(assignments, key=lambda a: (a.user.username, a.role))


def top_grids_by_id() -> dict[int, GridNode]:
    """Streets and districts (what departments belong to)."""
    return {node.id: node for node in db.session.scalars(select(GridNode).where(GridNode.level.in_(ROOT_LEVELS)))}


def grid_choices(levels: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(code, indented label) in tree order, for select boxes."""
    wanted = set(levels) if levels is not None else None
    return [
        (row.node.code, f"{'　' * row.depth}{row.node.name} ({row.node.code}, {level_label(row.node.level)})")
        for row in grid_tree()
        if wanted is None or row.node.level in wanted
    ]


# -- people --------------------------------------------------------------------------
@dataclass
class UserPage:
    users: list[User]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def search_users(query: str | None, *, page: int, page_size: int) -> UserPage:
    statement = select(User)
    text = (query or "").strip()
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        statement = statement.where(or_(*(column.ilike(pattern, escape="\\")
                                          for column in (User.username, User.display_name, User.phone))))
    total = db.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    page = max(1, page)
    users = list(db.session.scalars(
        statement.options(selectinload(User.roles)).order_by(User.username).offset((page - 1) * page_size).limit(page_size)
    ))
    return UserPage(users, total, page, page_size)


def user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(_("No such user."))
    return user


def find_user(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


def create_user(username: str, display_name: str, *, password: str | None = None, phone: str | None = None,
                is_admin: bool = False, department: Department | None = None) -> tuple[User, str | None]:
    """Create a person; with no password one is generated and returned (to be shown once)."""
    username, display_name, phone = (username or "").strip(), (display_name or "").strip(), (phone or "").strip()
    problem = username_problem(username)
    if problem is None and find_user(username) is not None:
        problem = _("The username %(username)s is already taken.", username=username)
    _refuse({"username": problem, "display_name": name_problem(display_name), "phone": phone_problem(phone),
             "password": password_problem(password or "")})
    generated = None
    if not password:
        password = generated = generate_password()
    user = people.create_user(username, display_name, password, is_admin=is_admin)
    people.update_user(user, phone=phone, department=department)
    return user, generated


def update_user(user: User, *, display_name: str, phone: str, department: Department | None,
                is_admin: bool, acting: User | None = None) -> User:
    display_name, phone = (display_name or "").strip(), (phone or "").strip()
    admin_problem = None
    if acting is not None and acting.id == user.id and user.is_admin and not is_admin:
        admin_problem = _("You cannot take away your own administrator rights.")
    _refuse({"display_name": name_problem(display_name), "phone": phone_problem(phone), "is_admin": admin_problem})
    people.update_user(user, display_name=display_name, phone=phone, department=department,
                       clear_department=department is None)
    user.is_admin = is_admin
    return user


def set_active(user: User, active: bool, *, acting: User | None = None) -> User:
    if not active and acting is not None and acting.id == user.id:
        raise InvalidInput(_("You cannot deactivate your own account."), fields={"active": [_("You cannot deactivate your own account.")]})
    people.set_active(user, active)
    return user


def reset_password(user: User, password: str | None) -> str | None:
    """Set the password (or generate one, returned to be shown once); lifts a lockout."""
    _refuse({"password": password_problem(password or "")})
    generated = None
    if not password:
        password = generated = generate_password()
    people.set_password(user, password)
    return generated


def grant(user: User, role: str, grid: GridNode | None) -> RoleAssignment:
    role_problem = None if role in runtime().roles else _("Unknown role %(role)s.", role=role or "''")
    grid_problem = None if grid is not None else _("Choose a grid.")
    if role_problem is None and grid is not None and any(
        a.role == role and a.grid_node_id == grid.id for a in user.roles
    ):
        role_problem = _("%(user)s already holds %(role)s at %(grid)s.", user=user.username, role=role_label(role), grid=grid.code)
    _refuse({"role": role_problem, "grid": grid_problem})
    assignment = people.grant_role(user, role, grid)
    db.session.flush()
    return assignment


def revoke(user: User, assignment_id: int) -> RoleAssignment:
    assignment = next((a for a in user.roles if a.id == assignment_id), None)
    if assignment is None:
        raise NotFound(_("This role assignment does not exist (any more)."))
    people.revoke_role(assignment)
    return assignment


def issue_token(user: User, name: str) -> str:
    name = (name or "").strip()
    _refuse({"name": name_problem(name)})
    if not user.is_active:
        raise InvalidInput(_("The account is deactivated."), fields={"name": [_("The account is deactivated.")]})
    return people.issue_token(user, name)


def revoke_token(user: User, token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(_("This token does not exist."))
    people.revoke_token(token)
    return token


# -- departments ------------------------------------------------------------------
def department_or_404(department_id: int) -> Department:
    department = db.session.get(Department, department_id)
    if department is None:
        raise NotFound(_("No such department."))
    return department


def _department_problems(name: str, level: str, grid: GridNode | None) -> dict[str, str | None]:
    level_issue = None if level in DEPARTMENT_LEVELS else _("Choose street or district.")
    grid_issue = None
    if grid is not None and grid.level not in ROOT_LEVELS:
        grid_issue = _("A department belongs to a street or a district, not to a %(level)s.", level=level_label(grid.level))
    return {"name": name_problem(name), "level": level_issue, "grid": grid_issue}


def create_department(code: str, name: str, level: str, grid: GridNode | None = None) -> Department:
    code, name = (code or "").strip(), (name or "").strip()
    problem = code_problem(code)
    if problem is None and people.department_by_code(code) is not None:
        problem = _("The code %(code)s is already used.", code=code)
    _refuse({"code": problem, **_department_problems(name, level, grid)})
    return people.add_department(code, name, level, grid)


def update_department(department: Department, name: str, level: str, grid: GridNode | None) -> Department:
    name = (name or "").strip()
    _refuse(_department_problems(name, level, grid))
    department.name, department.level, department.grid_node_id = name, level, grid.id if grid else None
    return department


def department_member_counts() -> dict[int, int]:
    rows = db.session.execute(
        select(User.department_id, func.count()).where(User.department_id.is_not(None)).group_by(User.department_id)
    )
    return {department_id: count for department_id, count in rows}


# -- CSV import -------------------------------------------------------------------
GRID_COLUMNS = ("code", "name", "level", "parent_code")
USER_COLUMNS = ("username", "display_name", "phone", "password", "roles")


@dataclass(frozen=True)
class ImportIssue:
    row: int | None      # row in the file as a spreadsheet numbers it: the header is row 1
    column: str | None   # None: the whole row or file
    message: str

    def __str__(self) -> str:
        if self.row is not None and self.column:
            return _("row %(row)d, column %(column)s: %(message)s", row=self.row, column=self.column, message=self.message)
        if self.row is not None:
            return _("row %(row)d: %(message)s", row=self.row, message=self.message)
        return self.message


@dataclass
class ImportReport:
    kind: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)  # generated, shown once
    issues: list[ImportIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def summary(self) -> str:
        return _("%(created)d created, %(updated)d updated, %(unchanged)d unchanged.",
                 created=len(self.created), updated=len(self.updated), unchanged=len(self.unchanged))


@dataclass
class CsvRow:
    number: int
    values: dict[str, str]

    def __getitem__(self, column: str) -> str:
        return self.values.get(column, "")


_BINARY_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"\x1f\x8b")


def read_csv(data: bytes, columns: Sequence[str], required: Sequence[str]) -> tuple[list[CsvRow], list[ImportIssue]]:
    """Decode and parse an uploaded CSV (UTF-8, with or without BOM). Returns the
    non-blank data rows and any problems with the file itself."""
    if len(data) > MAX_IMPORT_BYTES:
        return [], [ImportIssue(None, None, _("The file is larger than 2 MB: split it into several files."))]
    if not data.strip():
        return [], [ImportIssue(None, None, _("The file is empty."))]
    if data.startswith(_BINARY_SIGNATURES) or b"\x00" in data[:65536]:
        return [], [ImportIssue(None, None, _("This is not a CSV text file (it looks like a spreadsheet or another binary file). "
                                              "Save it as \"CSV UTF-8 (comma delimited)\" and upload that."))]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [ImportIssue(None, None, _("The file is not UTF-8 text (byte %(position)d). "
                                              "Save it as \"CSV UTF-8 (comma delimited)\" and upload that.",
                                              position=exc.start + 1))]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        return [], [ImportIssue(reader.line_num or None, None, _("This is not valid CSV: %(error)s", error=str(exc)))]
    if not records:
        return [], [ImportIssue(None, None, _("The file is empty."))]

    header = [cell.strip().lstrip("\ufeff").lower() for cell in records[0]]
    issues: list[ImportIssue] = []
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "；")):
        return [], [ImportIssue(1, None, _("Columns must be separated by commas; the first line should be: %(header)s",
                                           header=",".join(columns)))]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            issues.append(ImportIssue(1, name, _("The column appears twice.")))
        elif name and name not in columns:
            issues.append(ImportIssue(1, name, _("Unknown column; the columns are: %(columns)s", columns=",".join(columns))))
        seen.add(name)
    for name in required:
        if name not in seen:
            issues.append(ImportIssue(1, name, _("Missing column; the first line should be: %(header)s", header=",".join(columns))))
    if issues:
        return [], issues

    rows: list[CsvRow] = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header) and any(cell.strip() for cell in record[len(header):]):
            issues.append(ImportIssue(number, None, _("The row has %(found)d values but the header has %(expected)d columns.",
                                                      found=len(record), expected=len(header))))
            continue
        values = {name: (record[index].strip() if index < len(record) else "") for index, name in enumerate(header) if name}
        rows.append(CsvRow(number, values))
    if not rows and not issues:
        issues.append(ImportIssue(None, None, _("The file has a header but no rows.")))
    return rows, issues


def import_grids(data: bytes, *, dry_run: bool = False) -> ImportReport:
    """Create or update grid nodes from ``code,name,level,parent_code`` rows.

    Parents may come later in the file (rows are applied in topological order) or
    already exist. Every row is checked first; with any problem nothing changes.
    Existing codes are updated (name, level), never duplicated or moved."""
    report = ImportReport("grids")
    rows, report.issues = read_csv(data, GRID_COLUMNS, GRID_COLUMNS)
    if report.issues:
        return report
    issues = report.issues
    existing = {node.code: node for node in db.session.scalars(select(GridNode))}
    existing_by_id = {node.id: node for node in existing.values()}

    by_code: dict[str, CsvRow] = {}
    for row in rows:
        code = row["code"]
        problem = code_problem(code)
        if problem:
            issues.append(ImportIssue(row.number, "code", problem))
        elif code in by_code:
            issues.append(ImportIssue(row.number, "code", _("The code %(code)s is already on row %(row)d.", code=code, row=by_code[code].number)))
        else:
            by_code[code] = row
        if problem := name_problem(row["name"]):
            issues.append(ImportIssue(row.number, "name", problem))
        if row["level"] not in LEVEL_RANK:
            issues.append(ImportIssue(row.number, "level", level_problem(row["level"], None)))

    rows_ok = {code: row for code, row in by_code.items()}
    # Parents: in the file or already in the database; an existing node keeps its parent.
    for code, row in list(rows_ok.items()):
        parent_code = row["parent_code"]
        if parent_code == code:
            issues.append(ImportIssue(row.number, "parent_code", _("A grid cannot be its own parent.")))
            rows_ok.pop(code)
        elif parent_code and parent_code not in by_code and parent_code not in existing:
            issues.append(ImportIssue(row.number, "parent_code", _("Unknown parent grid %(code)s (not in the file nor in the system).", code=parent_code)))
            rows_ok.pop(code)
        elif code in existing:
            node = existing[code]
            current = existing_by_id.get(node.parent_id).code if node.parent_id in existing_by_id else ""
            if parent_code != current:
                issues.append(ImportIssue(row.number, "parent_code", _(
                    "%(code)s already exists under %(current)s; moving a grid to another parent is not supported.",
                    code=code, current=current or _("(top level)"))))
                rows_ok.pop(code)

    order, cyclic = _topological(rows_ok)
    for code in cyclic:
        row = rows_ok[code]
        issues.append(ImportIssue(row.number, "parent_code", _("The parents form a cycle: %(cycle)s.", cycle=_cycle_text(code, rows_ok))))

    def final_level(code: str) -> str | None:
        if code in by_code:
            return by_code[code]["level"]
        return existing[code].level if code in existing else None

    for code in order:
        row = rows_ok[code]
        level = row["level"]
        if level not in LEVEL_RANK:
            continue
        parent_code = row["parent_code"]
        parent_level = final_level(parent_code) if parent_code else None
        if parent_code and parent_level not in LEVEL_RANK:
            continue  # the parent's own row reports its bad level
        if problem := level_problem(level, parent_level):
            issues.append(ImportIssue(row.number, "level", problem))
            continue
        node = existing.get(code)
        if node is not None and node.level != level:
            for child in existing.values():
                if child.parent_id == node.id and child.code not in by_code and LEVEL_RANK.get(child.level, 99) <= LEVEL_RANK[level]:
                    issues.append(ImportIssue(row.number, "level", _(
                        "%(child)s (%(child_level)s) is already under %(code)s; %(level)s cannot hold it.",
                        child=child.code, child_level=level_label(child.level), code=code, level=level_label(level))))
                    break

    if issues:
        report.issues = sorted(issues, key=lambda i: (i.row or 0, GRID_COLUMNS.index(i.column) if i.column in GRID_COLUMNS else 9))
        return report
    if dry_run:
        for code in order:
            (report.updated if code in existing else report.created).append(code)
        return report

    nodes = dict(existing)
    for code in order:
        row = rows_ok[code]
        node = nodes.get(code)
        if node is None:
            parent = nodes[row["parent_code"]] if row["parent_code"] else None
            nodes[code] = people.add_grid_node(code, row["name"], row["level"], parent)
            report.created.append(code)
        elif (node.name, node.level) != (row["name"], row["level"]):
            node.name, node.level = row["name"], row["level"]
            report.updated.append(code)
        else:
            report.unchanged.append(code)
    db.session.flush()
    return report


def _topological(rows: dict[str, CsvRow]) -> tuple[list[str], list[str]]:
    """Codes with parents before children (file order otherwise), and the codes left in cycles."""
    children: dict[str, list[str]] = defaultdict(list)
    waiting: dict[str, int] = {}
    for code, row in rows.items():
        parent = row["parent_code"]
        if parent in rows:
            children[parent].append(code)
            waiting[code] = 1
        else:
            waiting[code] = 0
    ready = [code for code in rows if waiting[code] == 0]
    order: list[str] = []
    while ready:
        code = ready.pop(0)
        order.append(code)
        for child in children[code]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    done = set(order)
    return order, [code for code in rows if code not in done]


def _cycle_text(code: str, rows: dict[str, CsvRow]) -> str:
    chain = [code]
    current = rows[code]["parent_code"]
    while current in rows and current not in chain:
        chain.append(current)
        current = rows[current]["parent_code"]
    if current in chain:
        chain = chain[chain.index(current):] + [current]
    return " → ".join(chain)


def parse_roles(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``role@grid_code;role@grid_code`` → [(role identifier, grid code)], problems.
    A role may be named by its identifier or its Chinese/English label."""
    catalogue = runtime().roles
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for item in re.split(r"[;；]", text or ""):
        item = item.strip()
        if not item:
            continue
        role_name, at, grid_code = item.partition("@")
        role_name, grid_code = role_name.strip(), grid_code.strip()
        if not at or not role_name or not grid_code:
            problems.append(_("%(item)s is not role@grid_code.", item=item))
            continue
        role = catalogue.resolve(role_name)
        if role is None:
            problems.append(_("Unknown role %(role)s.", role=role_name))
            continue
        if (role, grid_code) not in pairs:
            pairs.append((role, grid_code))
    return pairs, problems


def import_users(data: bytes, *, dry_run: bool = False) -> ImportReport:
    """Create or update people from ``username,display_name,phone,password,roles`` rows.

    New users get the password given, or a generated one (reported once). Existing users
    keep their password (reset it on their page); their name and phone follow the file and
    the roles listed are added (roles not listed are kept). Nothing changes if any row is wrong."""
    report = ImportReport("users")
    rows, report.issues = read_csv(data, USER_COLUMNS, ("username", "display_name"))
    if report.issues:
        return report
    issues = report.issues
    grids = {node.code: node for node in db.session.scalars(select(GridNode))}
    usernames = [row["username"] for row in rows]
    existing = {user.username: user for user in db.session.scalars(select(User).where(User.username.in_(usernames)))} if usernames else {}

    seen: dict[str, int] = {}
    plans: list[tuple[CsvRow, list[tuple[str, str]]]] = []
    for row in rows:
        username = row["username"]
        if problem := username_problem(username):
            issues.append(ImportIssue(row.number, "username", problem))
        elif username in seen:
            issues.append(ImportIssue(row.number, "username", _("The username %(username)s is already on row %(row)d.", username=username, row=seen[username])))
        else:
            seen[username] = row.number
        if problem := name_problem(row["display_name"]):
            issues.append(ImportIssue(row.number, "display_name", problem))
        if problem := phone_problem(row["phone"]):
            issues.append(ImportIssue(row.number, "phone", problem))
        if problem := password_problem(row["password"]):
            issues.append(ImportIssue(row.number, "password", problem))
        pairs, problems = parse_roles(row["roles"])
        for grid_code in dict.fromkeys(code for _role, code in pairs):
            if grid_code not in grids:
                problems.append(_("Unknown grid %(code)s.", code=grid_code))
        issues.extend(ImportIssue(row.number, "roles", problem) for problem in problems)
        plans.append((row, pairs))

    if issues:
        report.issues = sorted(issues, key=lambda i: (i.row or 0, USER_COLUMNS.index(i.column) if i.column in USER_COLUMNS else 9))
        return report

    for row, pairs in plans:
        username = row["username"]
        user = existing.get(username)
        if user is None:
            if not dry_run:
                password = row["password"] or generate_password()
                user = people.create_user(username, row["display_name"], password)
                people.update_user(user, phone=row["phone"])
                for role, grid_code in pairs:
                    people.grant_role(user, role, grids[grid_code])
                if not row["password"]:
                    report.passwords[username] = password
            report.created.append(username)
            continue
        held = {(a.role, a.grid_node_id) for a in user.roles}
        missing = [(role, code) for role, code in pairs if (role, grids[code].id) not in held]
        phone = row["phone"] or None
        if (user.display_name, user.phone) == (row["display_name"], phone) and not missing:
            report.unchanged.append(username)
            continue
        if not dry_run:
            people.update_user(user, display_name=row["display_name"], phone=row["phone"])
            for role, grid_code in missing:
                people.grant_role(user, role, grids[grid_code])
        report.updated.append(username)
    db.session.flush()
    return report
