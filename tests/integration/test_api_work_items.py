"""Task queues: who sees what, claiming, releasing, and refusals by role and grid scope."""
from __future__ import annotations

from datetime import timedelta

from tests.integration.helpers import DISPATCH_PATH, REGISTER, SELF_PATH, call, complete, open_item, start_case, walk


def queue(client, world, user, query=""):
    response = call(client, world, "GET", f"/api/work-items{query}", user)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_queues_follow_role_and_grid_scope(client, world):
    mine = start_case(client, world, grid="S-C1-G1", user="member")
    other = start_case(client, world, grid="S-C2-G1", user="member2")

    assert [i["case"]["reference"] for i in queue(client, world, "member")["items"]] == [mine["reference"]]
    assert [i["case"]["reference"] for i in queue(client, world, "member2")["items"]] == [other["reference"]]
    # Register is a grid member's task: community staff, department and chief see nothing.
    for user in ("community", "department", "chief"):
        assert queue(client, world, user)["total"] == 0
    # Admin sees everything; filters narrow it down.
    assert queue(client, world, "admin")["total"] == 2
    assert queue(client, world, "admin", "?grid=S-C2")["total"] == 1
    assert queue(client, world, "admin", "?role=community_staff")["total"] == 0
    assert queue(client, world, "admin", f"?case={mine['reference']}")["items"][0]["task"] == "register"

    walk(client, world, mine["reference"], SELF_PATH[:1])
    review = queue(client, world, "community")["items"]
    assert [(i["task"], i["role"], i["grid"]["code"]) for i in review] == [("review", "community_staff", "S-C1-G1")]


def test_outside_scope_or_wrong_role_is_refused_and_recorded_nowhere(app, client, world):
    case = start_case(client, world, grid="S-C1-G1", user="member")
    item = open_item(client, world, case["reference"], "register")
    # member2 holds the right role but in another community; community staff the wrong role.
    for user in ("member2", "community", "department"):
        for action in ("claim", "complete"):
            body = {"json": {"data": REGISTER}} if action == "complete" else {}
            response = call(client, world, "POST", f"/api/work-items/{item['id']}/{action}", user, **body)
            assert response.status_code == 403, (user, action, response.get_json())
            assert response.get_json()["error"]["code"] == "forbidden"
        assert call(client, world, "GET", f"/api/work-items/{item['id']}", user).status_code == 403
    # The case in another community is not readable either.
    assert call(client, world, "GET", f"/api/cases/{case['reference']}", "member2").status_code == 404
    events = call(client, world, "GET", f"/api/cases/{case['reference']}/events").get_json()
    assert [e["kind"] for e in events["items"]] == ["case_started"]


def test_starting_a_case_outside_your_scope_is_refused(client, world):
    response = call(client, world, "POST", "/api/cases", "member2",
                    json={"process_id": "grid_quick", "title": "x", "grid": "S-C1-G1"})
    assert response.status_code == 403


def test_claim_release_and_claimed_by_other(client, world):
    case = start_case(client, world)
    walk(client, world, case["reference"], SELF_PATH[:4])  # up to close (duty chief)
    item = open_item(client, world, case["reference"], "close")

    claimed = call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "chief")
    assert claimed.status_code == 200
    assert claimed.get_json()["state"] == "claimed"
    assert claimed.get_json()["assignee"] == "chief"
    assert queue(client, world, "chief", "?assignee=me")["total"] == 1

    # The other duty chief cannot claim, complete or release it.
    response = call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "chief2")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "claimed_by_other"
    response = call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "chief2",
                    json={"data": SELF_PATH[4][2]})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "claimed_by_other"
    assert call(client, world, "POST", f"/api/work-items/{item['id']}/release", "chief2").status_code == 403

    released = call(client, world, "POST", f"/api/work-items/{item['id']}/release", "chief")
    assert released.status_code == 200 and released.get_json()["state"] == "ready"
    assert call(client, world, "POST", f"/api/work-items/{item['id']}/release", "chief").status_code == 409

    done = call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "chief2", json={"data": SELF_PATH[4][2]})
    assert done.status_code == 200
    events = call(client, world, "GET", f"/api/cases/{case['reference']}/events").get_json()
    kinds = [e["kind"] for e in events["items"]]
    assert kinds[-3:] == ["task_claimed", "task_released", "task_completed"]
    assert events["items"][-1]["actor"] == "chief2"


def test_work_item_detail_carries_the_form(client, world):
    case = start_case(client, world)
    item = open_item(client, world, case["reference"], "register")
    detail = call(client, world, "GET", f"/api/work-items/{item['id']}", "member").get_json()
    assert detail["form"] == "register.form.json"
    assert detail["form_schema"]["type"] == "object"
    assert set(detail["form_schema"]["required"]) == {"category", "description", "location", "verified"}
    assert detail["light"] == "green"


def test_overdue_filter_and_lights(app, client, world):
    from app.db import commit, db
    from app.timeutil import utcnow
    from app.work.models import WorkItem

    case = start_case(client, world)
    walk(client, world, case["reference"], DISPATCH_PATH[:2])
    assert queue(client, world, "department", "?overdue=true")["total"] == 0
    item = queue(client, world, "department", "?overdue=false")["items"][0]
    assert item["task"] == "department_handle" and item["light"] == "green"

    with app.app_context():
        row = db.session.get(WorkItem, item["id"])
        row.due_at = utcnow() - timedelta(minutes=1)
        commit()
    overdue = queue(client, world, "department", "?overdue=true")
    assert overdue["total"] == 1 and overdue["items"][0]["light"] == "red"


def test_pagination(client, world):
    references = [start_case(client, world, title=f"事件{i}")["reference"] for i in range(5)]
    first = queue(client, world, "member", "?page=1&page_size=2")
    second = queue(client, world, "member", "?page=2&page_size=2")
    third = queue(client, world, "member", "?page=3&page_size=2")
    assert first["total"] == 5
    seen = [i["case"]["reference"] for page in (first, second, third) for i in page["items"]]
    assert sorted(seen) == sorted(references)
    assert len(third["items"]) == 1
