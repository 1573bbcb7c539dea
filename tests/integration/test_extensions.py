"""Deadline extensions (延期) over the API: a department handler asks, a supervisor decides.
Approval moves the boundary timer in the workflow itself: firing at the old deadline does
nothing, at the new one the escalation path runs. Bad input changes nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.helpers import REGISTER, REVIEW_DISPATCH, call, open_item, start_case, walk

DISPATCH_TO_DEPARTMENT = [("register", "member", REGISTER), ("review", "community", REVIEW_DISPATCH)]


def dispatched(client, world):
    """A grid_quick case at department_handle (5-day interrupting timer), claimed by 'department'."""
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, DISPATCH_TO_DEPARTMENT)
    item = open_item(client, world, reference, "department_handle")
    assert item["due_at"] is not None and item["extension_count"] == 0
    response = call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "department")
    assert response.status_code == 200, response.get_json()
    return reference, item


def events(client, world, reference):
    return call(client, world, "GET", f"/api/cases/{reference}/events?page_size=200").get_json()["items"]


def ask(client, world, item_id, user="department", **body):
    return call(client, world, "POST", f"/api/work-items/{item_id}/extensions", user, json=body)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def fire(app, at: datetime) -> int:
    from app.jobs import fire_due_timers

    with app.app_context():
        return fire_due_timers(at=at)


def timers(app, reference):
    from sqlalchemy import select

    from app.cases.models import Case, Timer
    from app.db import db

    with app.app_context():
        rows = db.session.execute(
            select(Timer.spec_id, Timer.due_at, Timer.state).join(Case, Case.id == Timer.case_id)
            .where(Case.reference == reference)
        ).all()
        db.session.remove()
        return rows


def test_approved_extension_moves_the_timer_in_the_workflow(app, client, world):
    reference, item = dispatched(client, world)
    old_due = parse(item["due_at"])

    response = ask(client, world, item["id"], reason="需协调产权单位，现场无法进入", working_days=3)
    assert response.status_code == 201, response.get_json()
    ext = response.get_json()
    assert ext["state"] == "pending" and parse(ext["requested_due_at"]) > old_due
    new_due = parse(ext["requested_due_at"])

    # The supervisor sees it pending in scope, and approves.
    listed = call(client, world, "GET", "/api/work-items/extensions", "supervisor").get_json()
    assert [e["id"] for e in listed["items"]] == [ext["id"]]
    response = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "supervisor", json={})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["state"] == "approved"

    moved = open_item(client, world, reference, "department_handle")
    assert parse(moved["due_at"]) == new_due and moved["extension_count"] == 1
    (timer,) = [t for t in timers(app, reference) if t.spec_id == "timer_overdue"]
    assert timer.due_at == new_due and timer.state == "waiting"

    kinds = [e["kind"] for e in events(client, world, reference)]
    assert kinds[-2:] == ["extension_requested", "extension_approved"]
    approved = events(client, world, reference)[-1]["payload"]
    assert approved["extension"] == ext["id"] and approved["work_item"] == item["id"]
    assert len(approved["timer_task_ids"]) == 1
    assert parse(approved["old_due_at"]) == old_due and parse(approved["new_due_at"]) == new_due

    # At the old deadline nothing fires; after the new one the case escalates to the supervisor.
    assert fire(app, old_due + timedelta(minutes=1)) == 0
    assert open_item(client, world, reference, "department_handle")["state"] == "claimed"
    assert fire(app, new_due + timedelta(minutes=1)) == 1
    assert open_item(client, world, reference, "supervise")["state"] == "ready"
    assert [e["kind"] for e in events(client, world, reference)][-1] == "timer_fired"


def test_extension_to_an_explicit_time_and_approval_with_another_time(app, client, world):
    reference, item = dispatched(client, world)
    old_due = parse(item["due_at"])
    wanted = (old_due + timedelta(days=10)).isoformat()
    ext = ask(client, world, item["id"], reason="等待材料", requested_due_at=wanted).get_json()
    assert parse(ext["requested_due_at"]) == parse(wanted)
    granted = old_due + timedelta(days=2)
    response = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "chief",
                    json={"due_at": granted.isoformat(), "reason": "只批两天"})
    assert response.status_code == 200, response.get_json()
    assert parse(response.get_json()["new_due_at"]) == granted
    assert parse(open_item(client, world, reference, "department_handle")["due_at"]) == granted


def test_rejection_needs_a_reason_and_leaves_the_deadline(app, client, world):
    reference, item = dispatched(client, world)
    ext = ask(client, world, item["id"], reason="人手不足", working_days=2).get_json()

    response = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/reject", "supervisor", json={})
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"].keys() == {"reason"}
    response = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/reject", "supervisor",
                    json={"reason": "理由不充分"})
    assert response.status_code == 200 and response.get_json()["state"] == "rejected"
    assert open_item(client, world, reference, "department_handle")["due_at"] == item["due_at"]
    assert [e["kind"] for e in events(client, world, reference)][-1] == "extension_rejected"
    # Decided is decided.
    again = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "supervisor", json={})
    assert again.status_code == 409
    # A new request may follow a rejection.
    assert ask(client, world, item["id"], reason="补充理由", working_days=1).status_code == 201


def test_who_may_ask_and_who_may_decide(app, client, world):
    reference, item = dispatched(client, world)
    # Not the holder: the community staff (other role), the admin, a supervisor.
    for user in ("community", "supervisor"):
        assert ask(client, world, item["id"], user, reason="x", working_days=1).status_code == 403, user
    ext = ask(client, world, item["id"], reason="需延期", working_days=1).get_json()
    # One pending request per task.
    assert ask(client, world, item["id"], reason="再来一次", working_days=2).status_code == 409
    # Deciding: not the requester, not a grid member, not another role.
    for user in ("department", "member", "community", "dispatcher"):
        response = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", user, json={})
        assert response.status_code == 403, user
    assert call(client, world, "GET", "/api/work-items/extensions", "member").status_code == 403
    assert call(client, world, "GET", "/api/work-items/extensions", "chief").get_json()["total"] == 1
    # A task with no deadline (review has none) cannot be extended.
    reference2 = start_case(client, world)["reference"]
    walk(client, world, reference2, [("register", "member", REGISTER)])
    review = open_item(client, world, reference2, "review")
    call(client, world, "POST", f"/api/work-items/{review['id']}/claim", "community")
    assert ask(client, world, review["id"], "community", reason="x", working_days=1).status_code == 409


@pytest.mark.parametrize("body", [
    {},
    {"working_days": 2},                                    # no reason
    {"reason": "", "working_days": 2},
    {"reason": "x"},                                        # neither days nor time
    {"reason": "x", "working_days": 0},
    {"reason": "x", "working_days": 999},
    {"reason": "x", "working_days": "two"},
    {"reason": "x", "requested_due_at": "2026-03-20T09:00:00"},        # naive
    {"reason": "x", "requested_due_at": "2020-01-01T09:00:00+08:00"},  # earlier than the deadline
    {"reason": "x", "requested_due_at": "tomorrow"},
    {"reason": "x", "working_days": 2, "requested_due_at": "2030-01-01T09:00:00+08:00"},  # both
    {"reason": "x" * 501, "working_days": 2},
])
def test_bad_requests_are_422_and_change_nothing(app, client, world, body):
    reference, item = dispatched(client, world)
    before = events(client, world, reference)
    response = ask(client, world, item["id"], **body)
    assert response.status_code == 422, (body, response.get_json())
    error = response.get_json()["error"]
    assert error["code"] and error["fields"]
    assert events(client, world, reference) == before
    assert call(client, world, "GET", "/api/work-items/extensions", "supervisor").get_json()["total"] == 0


def test_unknown_ids_are_404(app, client, world):
    assert ask(client, world, 999999, reason="x", working_days=1).status_code == 404
    assert call(client, world, "POST", "/api/work-items/extensions/999999/approve", "supervisor", json={}).status_code == 404


def test_declared_limit_without_timers_is_extended_on_the_work_item(app, client, world):
    """incident_abcd's register task declares timeLimit "1 working_hours" (no boundary timer)."""
    response = call(client, world, "POST", "/api/cases", "member",
                    json={"process_id": "incident_abcd", "title": "井盖破损", "grid": "S-C1-G1", "data": {}})
    assert response.status_code == 201, response.get_json()
    reference = response.get_json()["reference"]
    item = open_item(client, world, reference, "register")
    assert item["due_at"] is not None and item["warn_at"] is not None
    assert parse(item["warn_at"]) < parse(item["due_at"])
    call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "member")
    ext = ask(client, world, item["id"], "member", reason="现场核实需等待物业", working_days=1).get_json()
    response = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "chief", json={})
    assert response.status_code == 200, response.get_json()
    moved = open_item(client, world, reference, "register")
    assert parse(moved["due_at"]) == parse(ext["requested_due_at"]) and moved["extension_count"] == 1
    approved = events(client, world, reference)[-1]
    assert approved["kind"] == "extension_approved" and approved["payload"]["timer_task_ids"] == []
