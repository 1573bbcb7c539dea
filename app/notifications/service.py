"""The inbox: who is told what, set-based.

Telling a role about new work is one INSERT … SELECT per new work item (the people
holding that role at a grid node covering the case's grid, department routing
respected), in the transaction of the step that made the work ready. Near-due and
overdue are found by a periodic scan that marks each work item as it tells (an
UPDATE … WHERE …_notified_at IS NULL … RETURNING), so a second scanner, a rerun or a
restart never tells twice.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from flask import current_app
from sqlalchemy import Integer, String, Text, bindparam, func, insert, literal, or_, select, update

from app.cases.models import Case
from app.db import db
from app.errors import InvalidInput
from app.notifications.models import (
    KIND_ASSIGNED, KIND_NEAR_DUE, KIND_NEW_WORK, KIND_OVERDUE, KIND_RETURNED, KINDS, Notification,
)
from app.people.models import GridNode, RoleAssignment, User
from app.timeutil import UTCDateTime, utcnow
from app.work.models import ITEM_CLAIMED, OPEN_STATES, WorkItem

TEXT_MAX = 400


# -- who ----------------------------------------------------------------------
def holders_of(roles: Iterable[str], grid_path: str, department_id: int | None = None) -> Any:
    """SELECT of the ids of active users holding one of ``roles`` at a node covering
    ``grid_path`` (and, for routed department work, members of that department)."""
    roles = list(roles)
    query = (
        select(User.id)
        .distinct()
        .select_from(RoleAssignment)
        .join(GridNode, GridNode.id == RoleAssignment.grid_node_id)
        .join(User, User.id == RoleAssignment.user_id)
        .where(
            RoleAssignment.role.in_(roles),
            literal(grid_path).startswith(GridNode.path),
            User.is_active.is_(True),
        )
    )
    if department_id is not None and set(roles) & set(current_app.config["DEPARTMENT_ROLES"]):
        query = query.where(User.department_id == department_id)
    return query


def supervisors_of(grid_path: str) -> Any:
    return holders_of(current_app.config["SUPERVISOR_ROLES"], grid_path)


# -- telling ------------------------------------------------------------------
def notify(
    recipients: Any, kind: str, *, case: Case | None = None, case_id: int | None = None,
    reference: str | None = None, work_item_id: int | None = None, text: str = "",
    at: datetime | None = None, exclude_user_id: int | None = None,
) -> None:
    """Tell ``recipients`` (a SELECT of user ids, or a list of ids) in one statement."""
    assert kind in KINDS, kind
    at = at or utcnow()
    if case is not None:
        case_id, reference = case.id, case.reference
    if isinstance(recipients, (list, tuple, set, frozenset)):
        ids = sorted({i for i in recipients if i is not None and i != exclude_user_id})
        if not ids:
            return
        db.session.execute(
            insert(Notification),
            [
                {"user_id": i, "kind": kind, "case_id": case_id, "case_reference": reference,
                 "work_item_id": work_item_id, "text": text[:TEXT_MAX], "created_at": at}
                for i in ids
            ],
        )
        return
    source = recipients.subquery()
    user_id = source.c[0]
    query = select(
        user_id,
        literal(kind),
        literal(case_id),
        literal(reference),
        literal(work_item_id),
        literal(text[:TEXT_MAX]),
        literal(at, UTCDateTime),
    )
    if exclude_user_id is not None:
        query = query.where(user_id != exclude_user_id)
    db.session.execute(
        insert(Notification).from_select(
            ["user_id", "kind", "case_id", "case_reference", "work_item_id", "text", "created_at"], query,
        )
    )


def describe_item(name: str, title: str) -> str:
    return f"{name} · {title}"


_NEW_WORK_INSERTS: dict[bool, Any] = {}


def _new_work_insert(by_department: bool) -> Any:
    """INSERT … SELECT of new-work notices, built once per process (bind parameters only),
    so a step pays for one statement and no SQL construction or compilation."""
    statement = _NEW_WORK_INSERTS.get(by_department)
    if statement is None:
        ra, grid, user = RoleAssignment.__table__, GridNode.__table__, User.__table__
        query = (
            select(
                user.c.id, literal(KIND_NEW_WORK), bindparam("case_id", type_=Integer),
                bindparam("reference", type_=String), bindparam("item_id", type_=Integer),
                bindparam("text", type_=Text), bindparam("at", type_=UTCDateTime),
            )
            .distinct()
            .select_from(ra.join(grid, grid.c.id == ra.c.grid_node_id).join(user, user.c.id == ra.c.user_id))
            .where(ra.c.role == bindparam("role", type_=String),
                   bindparam("grid_path", type_=String).startswith(grid.c.path),
                   user.c.is_active.is_(True))
        )
        if by_department:
            query = query.where(user.c.department_id == bindparam("department_id", type_=Integer))
        statement = Notification.__table__.insert().from_select(
            ["user_id", "kind", "case_id", "case_reference", "work_item_id", "text", "created_at"], query,
        )
        _NEW_WORK_INSERTS[by_department] = statement
    return statement


def on_work_ready(case: Case, items: list[WorkItem], at: datetime) -> None:
    """cases.WORK_READY_HOOKS: tell the people who may claim each new work item (one
    INSERT … SELECT per item; department routing as in app.work.service.visible_to)."""
    config = current_app.config
    for item in items:
        if not item.role or item.role in config["NOTIFY_SKIP_ROLES"]:
            continue
        by_department = item.department_id is not None and item.role in config["DEPARTMENT_ROLES"]
        params = {"case_id": case.id, "reference": case.reference, "item_id": item.id,
                  "text": describe_item(item.name, case.title)[:TEXT_MAX], "at": at, "role": item.role,
                  "grid_path": item.grid_path}
        if by_department:
            params["department_id"] = item.department_id
        db.session.execute(_new_work_insert(by_department), params)


def on_event(case: Case, event) -> None:
    """history.EVENT_HOOKS: returned and reassigned work."""
    if event.kind not in ("task_returned", "task_reassigned"):
        return
    payload = event.payload or {}
    item_id = payload.get("work_item")
    names = [n for n in (payload.get("from"), payload.get("to")) if n]
    users = {u.username: u.id for u in db.session.scalars(select(User).where(User.username.in_(names)))} if names else {}
    text = describe_item(str(payload.get("name") or ""), case.title)
    reason = str(payload.get("reason") or "")
    if reason:
        text = f"{text} · {reason}"
    previous = users.get(payload.get("from"))
    if previous is not None:
        notify([previous], KIND_RETURNED, case=case, work_item_id=item_id, text=text, at=event.at)
    if event.kind == "task_reassigned" and users.get(payload.get("to")) is not None:
        notify([users[payload["to"]]], KIND_ASSIGNED, case=case, work_item_id=item_id, text=text, at=event.at)
    elif event.kind == "task_returned" and item_id is not None:
        item = db.session.get(WorkItem, item_id)
        if item is not None and item.role:
            notify(holders_of([item.role], item.grid_path, item.department_id), KIND_RETURNED, case=case,
                   work_item_id=item_id, text=text, at=event.at, exclude_user_id=previous)


def scan_deadlines(now: datetime | None = None) -> tuple[int, int]:
    """Tell assignees whose claimed work passed its warning time, and assignees and
    supervisors in scope about work past its deadline. Marks each item as it tells, so
    it is idempotent and safe with several scanners. Returns (near-due, overdue) counts."""
    now = now or utcnow()
    overdue = db.session.execute(
        update(WorkItem)
        .where(WorkItem.state.in_(OPEN_STATES), WorkItem.due_at.is_not(None), WorkItem.due_at <= now,
               WorkItem.due_notified_at.is_(None))
        .values(due_notified_at=now, warn_notified_at=func.coalesce(WorkItem.warn_notified_at, now))
        .returning(WorkItem.id, WorkItem.case_id, WorkItem.assignee_id, WorkItem.grid_path, WorkItem.name)
        .execution_options(synchronize_session=False)
    ).all()
    near = db.session.execute(
        update(WorkItem)
        .where(WorkItem.state == ITEM_CLAIMED, WorkItem.assignee_id.is_not(None), WorkItem.warn_at.is_not(None),
               WorkItem.warn_at <= now, WorkItem.warn_notified_at.is_(None),
               or_(WorkItem.due_at.is_(None), WorkItem.due_at > now))
        .values(warn_notified_at=now)
        .returning(WorkItem.id, WorkItem.case_id, WorkItem.assignee_id, WorkItem.name)
        .execution_options(synchronize_session=False)
    ).all()
    case_ids = {row.case_id for row in overdue} | {row.case_id for row in near}
    cases = {c.id: c for c in db.session.scalars(select(Case).where(Case.id.in_(case_ids)))} if case_ids else {}
    for row in near:
        case = cases[row.case_id]
        notify([row.assignee_id], KIND_NEAR_DUE, case=case, work_item_id=row.id,
               text=describe_item(row.name, case.title), at=now)
    for row in overdue:
        case = cases[row.case_id]
        text = describe_item(row.name, case.title)
        if row.assignee_id is not None:
            notify([row.assignee_id], KIND_OVERDUE, case=case, work_item_id=row.id, text=text, at=now)
        notify(supervisors_of(row.grid_path), KIND_OVERDUE, case=case, work_item_id=row.id, text=text, at=now,
               exclude_user_id=row.assignee_id)
    db.session.flush()
    return len(near), len(overdue)


# -- reading and marking --------------------------------------------------------
def unread_count(user: User) -> int:
    return db.session.scalar(
        select(func.count(Notification.id)).where(Notification.user_id == user.id, Notification.read_at.is_(None))
    ) or 0


def list_for(user: User, *, unread_only: bool = False, page: int = 1, page_size: int = 50) -> tuple[list[Notification], int]:
    query = select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(Notification.created_at.desc(), Notification.id.desc()).offset((page - 1) * page_size).limit(page_size))
    return list(rows), total


def mark_read(user: User, ids: Iterable[Any], *, at: datetime | None = None) -> int:
    """Mark the user's own notifications read; ids of others' are ignored. Returns how many changed."""
    clean = set()
    for value in ids:
        try:
            clean.add(int(value))
        except (TypeError, ValueError):
            raise InvalidInput("ids must be whole numbers", code="invalid_ids", fields={"ids": ["must be whole numbers"]}) from None
    if not clean:
        return 0
    result = db.session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.id.in_(clean), Notification.read_at.is_(None))
        .values(read_at=at or utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def mark_all_read(user: User, *, at: datetime | None = None) -> int:
    result = db.session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=at or utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
