"""Task queues: finding work items and acting on them (claim, release, complete)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import joinedload

from app.cases import service as cases
from app.cases.models import Case
from app.db import db
from app.errors import Conflict, NotFound, PermissionDenied
from app.people import service as people
from app.people.models import GridNode, User
from app.runtime import Runtime
from app.timeutil import utcnow
from app.work.models import ITEM_CLAIMED, ITEM_READY, OPEN_STATES, WorkItem
from workflows.engine import Outcome


@dataclass(frozen=True)
class WorkFilter:
    role: str | None = None
    grid: str | None = None          # grid code: items at this node and below
    assignee: str | None = None      # username, or "me"
    state: str | None = None         # ready / claimed / completed / cancelled / open
    overdue: bool | None = None
    process_id: str | None = None
    case: str | None = None          # case reference


@dataclass(frozen=True)
class Page:
    items: list[WorkItem]
    total: int
    page: int
    page_size: int


def visible_to(user: User) -> Any:
    """SQL condition: the items a user may see — those whose role they hold at a
    grid node covering the item's grid, and those assigned to them."""
    if user.is_admin:
        return True
    conditions = [WorkItem.assignee_id == user.id]
    for role, scope in people.scopes(user).items():
        conditions.append(
            and_(WorkItem.role == role, or_(*[WorkItem.grid_path.startswith(path) for path in scope.paths]))
        )
    return or_(*conditions) if conditions else false()


def list_work_items(user: User, filters: WorkFilter, *, page: int, page_size: int, now: datetime | None = None) -> Page:
    now = now or utcnow()
    query: Select = select(WorkItem).where(visible_to(user))
    if filters.role:
        query = query.where(WorkItem.role == filters.role)
    if filters.grid:
        node = people.grid_by_code(filters.grid)
        query = query.where(WorkItem.grid_path.startswith(node.path))
    if filters.assignee:
        assignee = user if filters.assignee == "me" else people.user_by_username(filters.assignee)
        query = query.where(WorkItem.assignee_id == assignee.id)
    if filters.state == "open" or filters.state is None:
        query = query.where(WorkItem.state.in_(OPEN_STATES))
    elif filters.state != "any":
        query = query.where(WorkItem.state == filters.state)
    if filters.overdue is True:
        query = query.where(WorkItem.due_at.is_not(None), WorkItem.due_at < now)
    elif filters.overdue is False:
        query = query.where(or_(WorkItem.due_at.is_(None), WorkItem.due_at >= now))
    if filters.process_id:
        query = query.where(WorkItem.process_id == filters.process_id)
    if filters.case:
        query = query.join(Case, Case.id == WorkItem.case_id).where(Case.reference == filters.case)

    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    # Most urgent first: items with a deadline by deadline, then the oldest.
    ordered = query.order_by(WorkItem.due_at.is_(None), WorkItem.due_at, WorkItem.created_at, WorkItem.id)
    ordered = ordered.options(joinedload(WorkItem.case).joinedload(Case.grid_node), joinedload(WorkItem.assignee))
    items = list(db.session.scalars(ordered.offset((page - 1) * page_size).limit(page_size)))
    return Page(items=items, total=total, page=page, page_size=page_size)


def get_item(item_id: int, user: User) -> WorkItem:
    item = db.session.get(WorkItem, item_id)
    if item is None:
        raise NotFound(f"work item {item_id} does not exist")
    if not _may_see(user, item):
        raise PermissionDenied("this work item is outside your roles and grid scope")
    return item


def claim(item_id: int, user: User, *, at: datetime | None = None) -> WorkItem:
    at = at or utcnow()
    case, item = _lock(item_id, user)
    _require_actor(user, item)
    if item.state != ITEM_READY:
        _refuse_state(item, user)
    item.state, item.assignee_id, item.claimed_at = ITEM_CLAIMED, user.id, at
    cases.record(case, "task_claimed", _item_payload(item), actor=user, role=item.role, at=at)
    return item


def release(item_id: int, user: User, *, at: datetime | None = None) -> WorkItem:
    at = at or utcnow()
    case, item = _lock(item_id, user)
    if item.state != ITEM_CLAIMED:
        raise Conflict(f"work item {item.id} is {item.state}, not claimed", code="not_claimed")
    if item.assignee_id != user.id:
        raise PermissionDenied("only the person who claimed this work item can release it")
    item.state, item.assignee_id, item.claimed_at = ITEM_READY, None, None
    cases.record(case, "task_released", _item_payload(item), actor=user, role=item.role, at=at)
    return item


def complete(
    rt: Runtime,
    item_id: int,
    user: User,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
    at: datetime | None = None,
) -> tuple[WorkItem, Outcome]:
    """Complete a work item. Ready items are claimed implicitly; an item claimed
    by someone else, already done, or a stale ``expected_version`` is a conflict."""
    at = at or utcnow()
    case, item = _lock(item_id, user)
    _require_actor(user, item)
    if expected_version is not None and case.row_version != expected_version:
        raise Conflict(
            f"case {case.reference} is at version {case.row_version}, not {expected_version}; reload it",
            code="stale_version",
        )
    if item.state not in OPEN_STATES or (item.state == ITEM_CLAIMED and item.assignee_id != user.id):
        _refuse_state(item, user)
    outcome = cases.apply_completion(rt, case, item, data, actor=user, at=at)
    return item, outcome


# -- internals ----------------------------------------------------------------
def _lock(item_id: int, user: User) -> tuple[Case, WorkItem]:
    try:
        case = cases.lock_case(select(WorkItem.case_id).where(WorkItem.id == item_id).scalar_subquery())
    except NotFound:
        raise NotFound(f"work item {item_id} does not exist") from None
    # Read the item only once the case is locked: a writer we waited for may have changed it.
    item = db.session.scalar(
        select(WorkItem).where(WorkItem.id == item_id).execution_options(populate_existing=True)
    )
    if not _may_see(user, item):
        raise PermissionDenied("this work item is outside your roles and grid scope")
    return case, item


def _may_see(user: User, item: WorkItem) -> bool:
    return user.is_admin or item.assignee_id == user.id or people.can_act(user, item.role, item.grid_path)


def _require_actor(user: User, item: WorkItem) -> None:
    if not people.can_act(user, item.role, item.grid_path):
        raise PermissionDenied(f"this task is for role {item.role!r} within grid scope; you do not hold it there")


def _refuse_state(item: WorkItem, user: User) -> None:
    if item.state == ITEM_CLAIMED and item.assignee_id != user.id:
        raise Conflict(f"work item {item.id} is claimed by someone else", code="claimed_by_other")
    raise Conflict(f"work item {item.id} is already {item.state}", code="task_not_open")


def _item_payload(item: WorkItem) -> dict[str, Any]:
    return {"work_item": item.id, "task_id": item.task_id, "task": item.spec_id, "name": item.name}
