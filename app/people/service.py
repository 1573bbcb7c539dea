"""People, grid scope and API tokens."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import or_, select

from app.db import db
from app.errors import DomainError, InvalidInput, NotFound
from app.people.models import GRID_LEVELS, ApiToken, Department, GridNode, RoleAssignment, User
from app.timeutil import utcnow

_hasher = PasswordHasher()


# -- grid tree -----------------------------------------------------------
def add_grid_node(code: str, name: str, level: str, parent: GridNode | None = None) -> GridNode:
    if level not in GRID_LEVELS:
        raise InvalidInput(f"unknown grid level {level!r}", fields={"level": [f"one of {', '.join(GRID_LEVELS)}"]})
    node = GridNode(code=code, name=name, level=level, parent=parent)
    db.session.add(node)
    db.session.flush()  # need the id for the path
    node.path = f"{parent.path if parent else '/'}{node.id}/"
    return node


def grid_by_code(code: str) -> GridNode:
    node = db.session.scalar(select(GridNode).where(GridNode.code == code))
    if node is None:
        raise InvalidInput(f"grid {code!r} does not exist", code="unknown_grid", fields={"grid": ["unknown grid code"]})
    return node


# -- users ---------------------------------------------------------------
def create_user(username: str, display_name: str, password: str | None, *, is_admin: bool = False) -> User:
    user = User(
        username=username,
        display_name=display_name,
        password_hash=_hasher.hash(password) if password else None,
        is_admin=is_admin,
    )
    db.session.add(user)
    db.session.flush()
    return user


def grant_role(user: User, role: str, node: GridNode) -> RoleAssignment:
    assignment = RoleAssignment(user=user, role=role, grid_node=node)
    db.session.add(assignment)
    return assignment


def user_by_username(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


class SignInRefused(DomainError):
    code = "sign_in_refused"


def sign_in(username: str, password: str, *, max_failures: int, lockout_minutes: int, now=None) -> User:
    """Check a person's password, counting failures: after ``max_failures`` in a row the
    account is locked for ``lockout_minutes`` (even the right password is refused then).
    The caller commits either way, so failures are counted."""
    now = now or utcnow()
    user = db.session.scalar(select(User).where(User.username == username))
    if user is not None and user.locked_until is not None and user.locked_until > now:
        raise SignInRefused("account_locked")
    checked = check_password(username, password)
    if checked is None:
        if user is not None:
            user.failed_logins = (user.failed_logins or 0) + 1
            if user.failed_logins >= max_failures:
                user.locked_until = now + timedelta(minutes=lockout_minutes)
                user.failed_logins = 0
        raise SignInRefused("bad_credentials")
    checked.failed_logins, checked.locked_until = 0, None
    return checked


def check_password(username: str, password: str) -> User | None:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active or not user.password_hash:
        _hasher.hash(password)  # spend the same time whether or not the user exists
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


# -- API tokens ----------------------------------------------------------
def issue_token(user: User, name: str) -> str:
    """Create a token and return it; only its hash is kept, so it is shown once."""
    token = "gc_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, name=name, token_sha256=_sha256(token)))
    return token


def user_for_token(token: str) -> User | None:
    row = db.session.scalar(
        select(ApiToken).where(ApiToken.token_sha256 == _sha256(token), ApiToken.revoked_at.is_(None))
    )
    if row is None or not row.user.is_active:
        return None
    return row.user


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- scope ---------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """Where a user may act in a role: the grid paths of their assignments."""

    role: str
    paths: tuple[str, ...]

    def covers(self, grid_path: str) -> bool:
        return any(grid_path.startswith(path) for path in self.paths)


def scopes(user: User) -> dict[str, Scope]:
    by_role: dict[str, list[str]] = {}
    for assignment in user.roles:
        by_role.setdefault(assignment.role, []).append(assignment.grid_node.path)
    return {role: Scope(role, tuple(paths)) for role, paths in by_role.items()}


def can_act(user: User, role: str | None, grid_path: str) -> bool:
    if role is None:
        return False
    scope = scopes(user).get(role)
    return scope is not None and scope.covers(grid_path)


def covers_grid(user: User, grid_path: str, roles: Iterable[str] | None = None) -> bool:
    """Does any of the user's roles (optionally limited to ``roles``) cover this grid node?"""
    wanted = set(roles) if roles is not None else None
    return any(
        scope.covers(grid_path) for role, scope in scopes(user).items() if wanted is None or role in wanted
    )


# -- administration (used by the admin pages and CLI) --------------------------
def set_password(user: User, password: str) -> None:
    """Give the user a new password (argon2) and lift any sign-in lockout."""
    user.password_hash = _hasher.hash(password)
    user.failed_logins, user.locked_until = 0, None


def set_active(user: User, active: bool) -> None:
    """Deactivated users can neither sign in nor use their tokens; nothing is deleted."""
    user.is_active = active
    if active:
        user.failed_logins, user.locked_until = 0, None


def update_user(user: User, *, display_name: str | None = None, phone: str | None = None,
                department: Department | None = None, clear_department: bool = False) -> User:
    if display_name is not None:
        user.display_name = display_name
    if phone is not None:
        user.phone = phone or None
    if department is not None:
        user.department_id = department.id
    elif clear_department:
        user.department_id = None
    return user


def revoke_role(assignment: RoleAssignment) -> None:
    user = assignment.user
    if assignment in user.roles:
        user.roles.remove(assignment)  # delete-orphan removes the row
    else:
        db.session.delete(assignment)
    db.session.flush()


def tokens_of(user: User) -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()


def add_department(code: str, name: str, level: str = "street", grid: GridNode | None = None) -> Department:
    department = Department(code=code, name=name, level=level, grid_node_id=grid.id if grid else None)
    db.session.add(department)
    db.session.flush()
    return department


def department_for_dispatch(role: str | None, data: Mapping[str, Any]) -> int | None:
    """The department a new task of ``role`` is dispatched to: the first DEPARTMENT_FIELDS
    key in the case data whose value is a department's code or name. None: not routed."""
    config = current_app.config
    if role not in config["DEPARTMENT_ROLES"]:
        return None
    for key in config["DEPARTMENT_FIELDS"]:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            found = db.session.scalar(
                select(Department.id).where(or_(Department.code == value.strip(), Department.name == value.strip()))
            )
            if found is not None:
                return found
    return None


def acts_for_department(user: User, department_id: int | None) -> bool:
    """Unrouted work is anyone's in the role; routed work only its department's members'."""
    return department_id is None or user.department_id == department_id


def departments() -> list[Department]:
    return list(db.session.scalars(select(Department).order_by(Department.level, Department.code)))


def department_by_code(code: str) -> Department | None:
    return db.session.scalar(select(Department).where(Department.code == code))
