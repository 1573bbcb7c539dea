"""The inbox: who is told what, and when — new work for my role in my scope (department
routing respected), my claimed work near its deadline, overdue work (assignee and
supervisors in scope), returned and reassigned work, extension requests and decisions;
unread counts and marking read over the API. The deadline scan tells each item once."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.integration.helpers import REGISTER, REVIEW_DISPATCH, call, open_item, start_case, walk
from tests.integration.test_department_routing import _dispatch_c_incident, departments  # noqa: F401 - fixture


def inbox(client, world, user, **query):
    url = "/api/notifications" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    response = call(client, world, "GET", url, user)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def kinds(client, world, user, reference=None):
    body = inbox(client, world, user, page_size=200)
    return sorted(n["kind"] for n in body["items"] if reference is None or n["case"] == reference)


def scan(app, at: datetime):
    from app.db import commit, db
    from app.notifications.service import scan_deadlines

    with app.app_context():
        counts = scan_deadlines(at)
        commit()
        db.session.remove()
        return counts


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_new_work_goes_to_the_role_in_scope_only(app, client, world):
    reference = start_case(client, world)["reference"]  # grid S-C1-G1: register for grid members
    assert kinds(client, world, "member", reference) == ["new_work"]
    assert kinds(client, world, "member2", reference) == []          # another community's grid member
    assert kinds(client, world, "community", reference) == []        # not yet their task
    body = inbox(client, world, "member")
    assert body["unread"] == 1
    (note,) = body["items"]
    assert note["case"] == reference and note["work_item"] == open_item(client, world, reference, "register")["id"]
    assert "登记核实" in note["text"] and "垃圾堆放" in note["text"]

    walk(client, world, reference, [("register", "member", REGISTER)])
    assert kinds(client, world, "community", reference) == ["new_work"]
    walk(client, world, reference, [("review", "community", REVIEW_DISPATCH)])
    assert kinds(client, world, "department", reference) == ["new_work"]
    assert kinds(client, world, "supervisor", reference) == []


def test_department_work_goes_to_the_dispatched_department_only(app, client, departments):  # noqa: F811
    world = departments
    reference = _dispatch_c_incident(client, world)
    assert kinds(client, world, "department", reference) == ["new_work"]
    assert kinds(client, world, "department2", reference) == []


def test_unread_counts_and_marking_read(app, client, world):
    for _ in range(3):
        start_case(client, world)
    body = inbox(client, world, "member")
    assert body["unread"] == 3 and body["total"] == 3
    first, second, third = (n["id"] for n in body["items"])
    # Others' notifications cannot be marked; bad ids are 422 and change nothing.
    assert call(client, world, "POST", "/api/notifications/read", "member2", json={"ids": [first]}).get_json()["marked"] == 0
    bad = call(client, world, "POST", "/api/notifications/read", "member", json={"ids": ["x"]})
    assert bad.status_code == 422 and bad.get_json()["error"]["fields"]
    assert inbox(client, world, "member")["unread"] == 3

    done = call(client, world, "POST", "/api/notifications/read", "member", json={"ids": [first]}).get_json()
    assert done == {"marked": 1, "unread": 2}
    assert [n["id"] for n in inbox(client, world, "member", unread="true")["items"]] == [second, third]
    done = call(client, world, "POST", "/api/notifications/read", "member", json={"all": True}).get_json()
    assert done == {"marked": 2, "unread": 0}
    assert inbox(client, world, "member")["total"] == 3
    assert call(client, world, "GET", "/api/notifications").status_code == 200  # admin: an empty inbox
    assert client.get("/api/notifications").status_code == 401


def _claimed_department_item(client, world):
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, [("register", "member", REGISTER), ("review", "community", REVIEW_DISPATCH)])
    item = open_item(client, world, reference, "department_handle")
    assert call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "department").status_code == 200
    return reference, item


def test_near_due_and_overdue_are_told_once(app, client, world):
    from app.db import commit, db
    from app.work.models import WorkItem

    reference, item = _claimed_department_item(client, world)
    due = parse(item["due_at"])
    with app.app_context():  # the process has no warning timer on this task: give the item one
        db.session.get(WorkItem, item["id"]).warn_at = due - timedelta(days=1)
        commit()
        db.session.remove()

    assert scan(app, due - timedelta(days=2)) == (0, 0)
    assert scan(app, due - timedelta(hours=12)) == (1, 0)
    assert scan(app, due - timedelta(hours=11)) == (0, 0)          # told once
    assert kinds(client, world, "department", reference) == ["near_due", "new_work"]

    assert scan(app, due + timedelta(minutes=1)) == (0, 1)
    assert scan(app, due + timedelta(minutes=2)) == (0, 0)
    assert kinds(client, world, "department", reference) == ["near_due", "new_work", "overdue"]
    for supervisor in ("supervisor", "chief", "chief2"):           # supervisors at the street
        assert kinds(client, world, supervisor, reference) == ["overdue"], supervisor
    assert kinds(client, world, "member", reference) == ["new_work"]  # only their register task


def test_unclaimed_overdue_work_goes_to_supervisors_and_near_due_waits_for_a_claim(app, client, world):
    reference = start_case(client, world, grid="S-C2-G1", user="member2")["reference"]
    item = open_item(client, world, reference, "register")
    from app.db import commit, db
    from app.timeutil import utcnow
    from app.work.models import WorkItem

    now = utcnow()
    with app.app_context():
        row = db.session.get(WorkItem, item["id"])
        row.warn_at, row.due_at = now + timedelta(hours=1), now + timedelta(hours=2)
        commit()
        db.session.remove()
    assert scan(app, now + timedelta(hours=1, minutes=1)) == (0, 0)   # nobody holds it
    assert scan(app, now + timedelta(hours=2, minutes=1)) == (0, 1)
    assert kinds(client, world, "supervisor", reference) == ["overdue"]
    assert kinds(client, world, "member2", reference) == ["new_work"]


def test_returned_and_reassigned_work(app, client, world):
    reference, item = _claimed_department_item(client, world)
    from app.db import commit, db
    from app.people import service as people

    with app.app_context():  # a second department handler at the street
        user = people.create_user("department3", "第二处置人", None)
        people.grant_role(user, "department_staff", people.grid_by_code("S"))
        world.tokens["department3"] = people.issue_token(user, "test")
        commit()
        db.session.remove()

    response = call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "department")
    assert response.status_code == 409  # already theirs
    with app.app_context():
        from app.work import service as work

        work.return_to_queue(item["id"], people.user_by_username("supervisor"), "超期未处置，退回重新认领")
        commit()
        db.session.remove()
    assert kinds(client, world, "department", reference) == ["new_work", "returned"]
    assert kinds(client, world, "department3", reference) == ["returned"]  # joined after it became ready
    returned = [n for n in inbox(client, world, "department")["items"] if n["kind"] == "returned"][0]
    assert "退回重新认领" in returned["text"]

    with app.app_context():
        from app.work import service as work

        work.reassign(item["id"], people.user_by_username("chief"), "department3", "改派")
        commit()
        db.session.remove()
    assert kinds(client, world, "department3", reference) == ["assigned", "returned"]


def test_extension_requests_and_decisions_are_told(app, client, world):
    reference, item = _claimed_department_item(client, world)
    ext = call(client, world, "POST", f"/api/work-items/{item['id']}/extensions", "department",
               json={"reason": "需协调", "working_days": 2}).get_json()
    for approver in ("supervisor", "chief", "chief2"):
        assert kinds(client, world, approver, reference) == ["extension_requested"], approver
    assert kinds(client, world, "department", reference) == ["new_work"]
    call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/reject", "chief", json={"reason": "不同意"})
    assert kinds(client, world, "department", reference) == ["extension_decided", "new_work"]

    # After an approved extension the overdue notice waits for the new deadline.
    ext = call(client, world, "POST", f"/api/work-items/{item['id']}/extensions", "department",
               json={"reason": "再申请", "working_days": 2}).get_json()
    old_due = parse(item["due_at"])
    call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "supervisor", json={})
    new_due = parse(open_item(client, world, reference, "department_handle")["due_at"])
    assert new_due > old_due
    assert scan(app, old_due + timedelta(minutes=1)) == (0, 0)
    assert scan(app, new_due + timedelta(minutes=1)) == (0, 1)


def test_the_periodic_job_and_the_cli_run_the_scan(app, client, world):
    from app.db import commit, db
    from app.jobs import PERIODIC_JOBS, run_periodic_job
    from app.timeutil import utcnow
    from app.work.models import WorkItem

    assert {"notify-deadlines", "webhooks-retry"} <= set(PERIODIC_JOBS)
    reference, item = _claimed_department_item(client, world)
    with app.app_context():
        db.session.get(WorkItem, item["id"]).due_at = utcnow() - timedelta(minutes=5)
        commit()
        assert run_periodic_job("notify-deadlines") == (0, 1)
        assert run_periodic_job("notify-deadlines") == (0, 0)
        assert run_periodic_job("webhooks-retry") == 0
    assert kinds(client, world, "supervisor", reference) == ["overdue"]
    result = app.test_cli_runner().invoke(args=["notifications", "scan"])
    assert result.exit_code == 0 and "0 near due, 0 overdue" in result.output
