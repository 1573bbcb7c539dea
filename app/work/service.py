"""Task queues: finding work items and acting on them (claim, release, complete)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from flask import current_app
from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import joinedload

from app.cases import service as cases
from app.cases.models import Case
from app.db import db
from app.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from app.people import service as people
from app.people.models import GridNode, RoleAssignment, User
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
        conditions.append(_role_scope_condition(user, role, scope.paths))
    return or_(*conditions) if conditions else false()


def _role_scope_condition(user: User, role: str, paths) -> Any:
    """Items of ``role`` under the user's grid paths; department work only for its members."""
    condition = and_(WorkItem.role == role, or_(*[WorkItem.grid_path.startswith(path) for path in paths]))
    if role in current_app.config["DEPARTMENT_ROLES"]:
        mine = WorkItem.department_id.is_(None)
        if user.department_id is not None:
            mine = or_(mine, WorkItem.department_id == user.department_id)
        condition = and_(condition, mine)
    return condition


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
    return user.is_admin or item.assignee_id == user.id or can_act_on(user, item)


def can_act_on(user: User, item: WorkItem) -> bool:
    """Role at a covering grid node and, for dispatched work, membership of its department."""
    return people.can_act(user, item.role, item.grid_path) and people.acts_for_department(user, item.department_id)


def _require_actor(user: User, item: WorkItem) -> None:
    if not people.can_act(user, item.role, item.grid_path):
        raise PermissionDenied(f"this task is for role {item.role!r} within grid scope; you do not hold it there")
    if not people.acts_for_department(user, item.department_id):
        raise PermissionDenied("this task was dispatched to another department")


def _refuse_state(item: WorkItem, user: User) -> None:
    if item.state == ITEM_CLAIMED and item.assignee_id != user.id:
        raise Conflict(f"work item {item.id} is claimed by someone else", code="claimed_by_other")
    raise Conflict(f"work item {item.id} is already {item.state}", code="task_not_open")


def _item_payload(item: WorkItem) -> dict[str, Any]:
    return {"work_item": item.id, "task_id": item.task_id, "task": item.spec_id, "name": item.name}


# -- workspace pages: queues, supervision ---------------------------------------
# (appended for the handlers' pages; the functions above keep their behaviour)
QUEUE_MINE = "mine"              # 我的待办: claimed by me
QUEUE_CLAIMABLE = "claimable"    # 待认领: ready, a role I hold covers its grid
QUEUE_OVERDUE = "overdue"        # 超期督办: open and past the deadline, within my supervision scope
QUEUES = (QUEUE_MINE, QUEUE_CLAIMABLE, QUEUE_OVERDUE)
LIGHTS = ("green", "yellow", "red")
LEVELS = ("A", "B", "C", "D")    # incident classes (case data "level")
SUPERVISING_ROLES = ("supervisor", "duty_chief")
REASON_MAX = 500


@dataclass(frozen=True)
class QueueFilter:
    process_id: str | None = None
    level: str | None = None     # incident class A/B/C/D, read from the case data key "level"
    grid: str | None = None      # grid code: items at this node and below (within the queue's scope)
    light: str | None = None     # green / yellow (past the warning) / red (past the deadline)
    department: str | None = None  # department code: dispatched work of that department


def supervision_paths(user: User) -> tuple[str, ...] | None:
    """Grid paths where the user supervises (督办 / 值班长); None means everywhere (admin)."""
    if user.is_admin:
        return None
    return tuple(a.grid_node.path for a in user.roles if a.role in SUPERVISING_ROLES)


def may_supervise(user: User, grid_path: str | None = None) -> bool:
    paths = supervision_paths(user)
    if paths is None:
        return True
    if grid_path is None:
        return bool(paths)
    return any(grid_path.startswith(path) for path in paths)


def _claimable_condition(user: User) -> Any:
    """Ready items of a role the user holds at a node covering the item's grid. Admins
    see everything but act only in the roles they hold, so this is the same for them."""
    conditions = [_role_scope_condition(user, role, scope.paths) for role, scope in people.scopes(user).items()]
    return and_(WorkItem.state == ITEM_READY, or_(*conditions) if conditions else false())


def _queue_condition(user: User, queue: str, now: datetime) -> Any:
    if queue == QUEUE_MINE:
        return and_(WorkItem.assignee_id == user.id, WorkItem.state == ITEM_CLAIMED)
    if queue == QUEUE_CLAIMABLE:
        return _claimable_condition(user)
    if queue == QUEUE_OVERDUE:
        paths = supervision_paths(user)
        overdue = and_(WorkItem.state.in_(OPEN_STATES), WorkItem.due_at.is_not(None), WorkItem.due_at <= now)
        if paths is None:
            return overdue
        return and_(overdue, or_(*[WorkItem.grid_path.startswith(p) for p in paths]) if paths else false())
    raise ValueError(f"unknown queue {queue!r}")


def _light_condition(light: str, now: datetime) -> Any:
    red = and_(WorkItem.due_at.is_not(None), WorkItem.due_at <= now)
    not_red = or_(WorkItem.due_at.is_(None), WorkItem.due_at > now)
    yellow = and_(not_red, WorkItem.warn_at.is_not(None), WorkItem.warn_at <= now)
    if light == "red":
        return red
    if light == "yellow":
        return yellow
    return and_(not_red, or_(WorkItem.warn_at.is_(None), WorkItem.warn_at > now))


def count_queue(user: User, queue: str, *, now: datetime | None = None) -> int:
    """Navigation badges: one COUNT over the queue's indexed columns, no joins."""
    if queue == QUEUE_OVERDUE and not may_supervise(user):
        return 0
    condition = _queue_condition(user, queue, now or utcnow())
    return db.session.scalar(select(func.count(WorkItem.id)).where(condition)) or 0


def list_queue(
    user: User, queue: str, filters: QueueFilter, *, page: int, page_size: int, now: datetime | None = None,
) -> Page:
    """One of the workspace queues, most urgent first (deadline, then the oldest)."""
    now = now or utcnow()
    if queue == QUEUE_OVERDUE and not may_supervise(user):
        raise PermissionDenied("only supervisors and duty chiefs see the overdue list", code="not_supervisor")
    query: Select = select(WorkItem).where(_queue_condition(user, queue, now))
    if filters.process_id:
        query = query.where(WorkItem.process_id == filters.process_id)
    if filters.grid:
        node = people.grid_by_code(filters.grid)
        query = query.where(WorkItem.grid_path.startswith(node.path))
    if filters.light in LIGHTS:
        query = query.where(_light_condition(filters.light, now))
    if filters.department:
        department = people.department_by_code(filters.department)
        query = query.where(WorkItem.department_id == (department.id if department is not None else -1))
    if filters.level:
        query = query.where(
            WorkItem.case_id.in_(select(Case.id).where(Case.data["level"].as_string() == filters.level))
        )
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    ordered = query.order_by(WorkItem.due_at.is_(None), WorkItem.due_at, WorkItem.created_at, WorkItem.id)
    ordered = ordered.options(joinedload(WorkItem.case).joinedload(Case.grid_node), joinedload(WorkItem.assignee))
    items = list(db.session.scalars(ordered.offset((page - 1) * page_size).limit(page_size)))
    return Page(items=items, total=total, page=page, page_size=page_size)


def grids_in_scope(user: User) -> list[GridNode]:
    """The grid nodes a user's roles cover (for the queue's grid filter), tree order."""
    query = select(GridNode).order_by(GridNode.path)
    if not user.is_admin:
        paths = sorted({a.grid_node.path for a in user.roles})
        if not paths:
            return []
        query = query.where(or_(*[GridNode.path.startswith(path) for path in paths]))
    return list(db.session.scalars(query))


def open_items_of(case: Case) -> list[WorkItem]:
    return list(
        db.session.scalars(
            select(WorkItem)
            .where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES))
            .options(joinedload(WorkItem.assignee))
            .order_by(WorkItem.id)
        )
    )


def users_by_id(ids: Any) -> dict[int, User]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(wanted)))}


def lock_for_completion(item_id: int, user: User) -> tuple[Case, WorkItem]:
    """Lock the item's case and check that ``user`` may complete it now — before a page
    stores the completion's uploads. :func:`complete` checks again under the same lock."""
    case, item = _lock(item_id, user)
    _require_actor(user, item)
    if item.state not in OPEN_STATES or (item.state == ITEM_CLAIMED and item.assignee_id != user.id):
        _refuse_state(item, user)
    cases._require_active(case)
    return case, item


def reassign_candidates(items: Any) -> dict[tuple[str | None, str], list[User]]:
    """Who could take each item: active users holding its role at its grid or above.
    Keyed by (role, grid_path); one query for all the items of a page."""
    keys = {(item.role, item.grid_path) for item in items if item.role}
    result: dict[tuple[str | None, str], list[User]] = {key: [] for key in keys}
    if not keys:
        return result
    prefixes = {prefix for _, path in keys for prefix in _path_prefixes(path)}
    rows = db.session.execute(
        select(RoleAssignment.role, GridNode.path, User)
        .join(GridNode, GridNode.id == RoleAssignment.grid_node_id)
        .join(User, User.id == RoleAssignment.user_id)
        .where(
            RoleAssignment.role.in_({role for role, _ in keys}),
            GridNode.path.in_(prefixes),
            User.is_active.is_(True),
        )
        .order_by(User.display_name, User.username)
    )
    for role, node_path, candidate in rows:
        for key in keys:
            if key[0] == role and key[1].startswith(node_path) and candidate not in result[key]:
                result[key].append(candidate)
    return result


def reassign(item_id: int, user: User, to_username: str, reason: str, *, at: datetime | None = None) -> WorkItem:
    """A supervisor (督办 / 值班长 covering the item's grid, or an admin) hands a ready or
    claimed item to someone who holds its role there. Recorded as ``task_reassigned``."""
    at = at or utcnow()
    case, item = _lock_supervised(item_id, user)
    reason = _required_reason(reason)
    to_username = (to_username or "").strip()
    if not to_username:
        raise InvalidInput("choose whom to give the task to", code="assignee_required",
                           fields={"assignee": ["choose whom to give the task to"]})
    if item.state not in OPEN_STATES:
        raise Conflict(f"work item {item.id} is already {item.state}", code="task_not_open")
    cases._require_active(case)
    target = db.session.scalar(select(User).where(User.username == to_username))
    if target is None or not target.is_active or not can_act_on(target, item):
        message = f"{to_username} does not hold role {item.role!r} for this grid"
        raise InvalidInput(message, code="assignee_lacks_role", fields={"assignee": [message]})
    if item.state == ITEM_CLAIMED and item.assignee_id == target.id:
        message = f"the task is already {to_username}'s"
        raise InvalidInput(message, code="already_assigned", fields={"assignee": [message]})
    previous = item.assignee
    item.state, item.assignee_id, item.claimed_at = ITEM_CLAIMED, target.id, at
    item.assignee = target
    payload = {**_item_payload(item), "from": previous.username if previous else None,
               "to": target.username, "reason": reason}
    cases.record(case, "task_reassigned", payload, actor=user, role=_supervising_role(user, item), at=at)
    return item


def return_to_queue(item_id: int, user: User, reason: str, *, at: datetime | None = None) -> WorkItem:
    """A supervisor takes a claimed item back to its role's queue (claimed → ready),
    recorded as ``task_returned`` with the reason."""
    at = at or utcnow()
    case, item = _lock_supervised(item_id, user)
    reason = _required_reason(reason)
    if item.state != ITEM_CLAIMED:
        raise Conflict(f"work item {item.id} is {item.state}, not claimed", code="not_claimed")
    cases._require_active(case)
    previous = item.assignee
    item.state, item.assignee_id, item.claimed_at = ITEM_READY, None, None
    item.assignee = None
    payload = {**_item_payload(item), "from": previous.username if previous else None, "reason": reason}
    cases.record(case, "task_returned", payload, actor=user, role=_supervising_role(user, item), at=at)
    return item


def _required_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required", code="reason_required", fields={"reason": ["a reason is required"]})
    if len(reason) > REASON_MAX:
        message = f"the reason must be at most {REASON_MAX} characters"
        raise InvalidInput(message, code="reason_too_long", fields={"reason": [message]})
    return reason


def _require_supervisor(user: User, item: WorkItem) -> None:
    if not may_supervise(user, item.grid_path):
        raise PermissionDenied("only a supervisor or duty chief covering this grid may do this", code="not_supervisor")


def _supervising_role(user: User, item: WorkItem) -> str | None:
    for assignment in user.roles:
        if assignment.role in SUPERVISING_ROLES and item.grid_path.startswith(assignment.grid_node.path):
            return assignment.role
    return None


def _lock_supervised(item_id: int, user: User) -> tuple[Case, WorkItem]:
    """Like :func:`_lock`, for supervisors: they need not hold the item's role."""
    try:
        case = cases.lock_case(select(WorkItem.case_id).where(WorkItem.id == item_id).scalar_subquery())
    except NotFound:
        raise NotFound(f"work item {item_id} does not exist") from None
    item = db.session.scalar(
        select(WorkItem).where(WorkItem.id == item_id).execution_options(populate_existing=True)
    )
    _require_supervisor(user, item)
    return case, item


def _path_prefixes(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) + "/" for i in range(len(parts))]
