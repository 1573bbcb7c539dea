"""Dispatched work goes to one department: only its members see it and may act on it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import call, open_item

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def departments(app, world):
    """Two street departments; `department` works for urban management, `department2` for law enforcement."""
    from app.db import commit
    from app.people import service as people

    with app.app_context():
        street = people.grid_by_code("S")
        urban = people.add_department("urban_management", "城市管理办公室", "street", street)
        enforcement = people.add_department("law_enforcement", "综合行政执法队", "street", street)
        people.user_by_username("department").department_id = urban.id
        other = people.create_user("department2", "执法队员", None)
        other.department_id = enforcement.id
        people.grant_role(other, "department_staff", street)
        world.tokens["department2"] = people.issue_token(other, "test")
        commit()
    return world


def _dispatch_c_incident(client, world) -> str:
    """An incident of class C dispatched by the dispatcher to urban management."""
    scenario = json.loads((ROOT / "bpmn/incident_abcd/scenarios/11_c_take_timeout_supervise_extension.json").read_text("utf-8"))
    response = call(client, world, "POST", "/api/cases", "member",
                    json={"process_id": "incident_abcd", "title": "井盖破损", "grid": "S-C1-G1", "data": {}})
    reference = response.get_json()["reference"]
    for step in scenario["steps"]:
        if step.get("complete") not in ("register", "dispatcher_review"):
            continue
        item = open_item(client, world, reference, step["complete"])
        user = {"grid_member": "member", "dispatcher": "dispatcher"}[item["role"]]
        data = dict(step["data"])
        if step["complete"] == "dispatcher_review":
            data["assigned_department"] = "urban_management"
        done = call(client, world, "POST", f"/api/work-items/{item['id']}/complete", user, json={"data": data})
        assert done.status_code == 200, done.get_json()
    return reference


def test_only_the_dispatched_department_sees_and_takes_the_task(app, client, departments):
    world = departments
    reference = _dispatch_c_incident(client, world)
    item = open_item(client, world, reference, "department_take")

    mine = call(client, world, "GET", f"/api/work-items?case={reference}", "department").get_json()
    theirs = call(client, world, "GET", f"/api/work-items?case={reference}", "department2").get_json()
    assert [i["task"] for i in mine["items"]] == ["department_take"]
    assert theirs["total"] == 0

    refused = call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "department2")
    assert refused.status_code == 403
    events = call(client, world, "GET", f"/api/cases/{reference}/events").get_json()["items"]
    assert "task_claimed" not in [e["kind"] for e in events]
    assert call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "department").status_code == 200


def test_work_not_routed_to_a_known_department_stays_with_the_role(app, client, departments):
    """grid_quick names no department: every department user in scope may take it."""
    from tests.integration.helpers import DISPATCH_PATH, start_case, walk

    case = start_case(client, departments)
    walk(client, departments, case["reference"], DISPATCH_PATH[:2])
    for user in ("department", "department2"):
        queue = call(client, departments, "GET", f"/api/work-items?case={case['reference']}", user).get_json()
        assert [i["task"] for i in queue["items"]] == ["department_handle"]
