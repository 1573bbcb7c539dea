"""The case API driven like an integration would, on SQLite and PostgreSQL."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from tests.integration.helpers import (
    DISPATCH_PATH, REGISTER, SELF_PATH, SUPERVISE, call, complete, open_item, start_case, walk,
)


def test_start_case_gives_reference_and_first_task(client, world):
    case = start_case(client, world)
    assert re.fullmatch(r"SJ-\d{4}-\d{6}", case["reference"])
    assert case["status"] == "active"
    assert case["process"]["process_id"] == "grid_quick"
    assert case["process"]["version"] == 1
    assert case["grid"]["code"] == "S-C1-G1"
    assert [(t["task"], t["role"], t["state"]) for t in case["tasks"]] == [("register", "grid_member", "ready")]

    again = call(client, world, "GET", f"/api/cases/{case['reference']}", "member").get_json()
    assert again["reference"] == case["reference"]
    assert again["row_version"] == case["row_version"]


def test_references_are_sequential(client, world):
    first = start_case(client, world)["reference"]
    second = start_case(client, world)["reference"]
    assert int(second.rsplit("-", 1)[1]) == int(first.rsplit("-", 1)[1]) + 1


def test_self_path_runs_to_the_end(client, world):
    case = start_case(client, world)
    body = walk(client, world, case["reference"], SELF_PATH)
    assert body["case"]["status"] == "completed"
    assert body["case"]["end_event"] == "end_closed"
    assert body["next_tasks"] == []

    final = call(client, world, "GET", f"/api/cases/{case['reference']}").get_json()
    assert final["status"] == "completed"
    assert final["closed_at"] is not None
    assert final["data"]["satisfaction"] == "satisfied"
    assert final["data"]["decision"] == "self"
    assert final["timers"] == []


def test_dispatch_path_goes_to_the_department(client, world):
    case = start_case(client, world)
    walk(client, world, case["reference"], DISPATCH_PATH[:2])
    item = open_item(client, world, case["reference"], "department_handle", "department")
    assert item["role"] == "department_staff"
    assert item["due_at"] is not None  # the interrupting P5D boundary timer
    walk(client, world, case["reference"], DISPATCH_PATH[2:])
    final = call(client, world, "GET", f"/api/cases/{case['reference']}").get_json()
    assert final["status"] == "completed"


def test_history_is_a_hash_chain(client, world):
    case = start_case(client, world)
    walk(client, world, case["reference"], SELF_PATH[:2])
    events = call(client, world, "GET", f"/api/cases/{case['reference']}/events").get_json()
    assert events["total"] == 3
    kinds = [e["kind"] for e in events["items"]]
    assert kinds == ["case_started", "task_completed", "task_completed"]
    assert events["items"][0]["prev_hash"] == "0" * 64
    for previous, event in zip(events["items"], events["items"][1:]):
        assert event["prev_hash"] == previous["hash"]
        assert event["seq"] == previous["seq"] + 1
    completed = events["items"][1]
    assert completed["actor"] == "member"
    assert completed["role"] == "grid_member"
    assert completed["payload"]["data"] == REGISTER
    assert completed["payload"]["effects"]["ready"] == ["review"]

    page = call(client, world, "GET", f"/api/cases/{case['reference']}/events?page=2&page_size=2").get_json()
    assert [e["seq"] for e in page["items"]] == [3]


def test_process_list(client, world):
    body = call(client, world, "GET", "/api/processes", "member").get_json()
    ids = [p["process_id"] for p in body["items"]]
    assert "grid_quick" in ids
    quick = next(p for p in body["items"] if p["process_id"] == "grid_quick")
    assert quick["name"] == "网格事件快速处置"
    assert any(f["filename"].endswith("grid_quick.bpmn") for f in quick["files"])
    assert call(client, world, "GET", "/api/processes/grid_quick").status_code == 200
    assert call(client, world, "GET", "/api/processes/nope").status_code == 404


def test_deploying_again_is_idempotent_and_changes_make_a_new_version(app, world, tmp_path):
    import shutil

    from app.db import commit
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    library = tmp_path / "bpmn"
    shutil.copytree(app.config["PROCESS_LIBRARY"], library)
    bpmn = library / "grid_quick" / "grid_quick.bpmn"
    bpmn.write_text(bpmn.read_text(encoding="utf-8").replace('"P5D"', '"P3D"'), encoding="utf-8")
    with app.app_context():
        again = deploy_folder(app.config["PROCESS_LIBRARY"], runtime())
        assert again.deployed == [] and again.issues == []
        report = deploy_folder(library, runtime())
        commit()
        assert [(v.process_id, v.version) for v in report.deployed] == [("grid_quick", 2)]


def test_timer_escalates_to_the_supervisor_once(app, client, world):
    from app.cases import service as cases
    from app.cases.models import CaseEvent
    from app.db import commit, db
    from app.runtime import runtime
    from app.timeutil import utcnow

    case = start_case(client, world)
    walk(client, world, case["reference"], DISPATCH_PATH[:2])
    body = call(client, world, "GET", f"/api/cases/{case['reference']}").get_json()
    deadline = next(t for t in body["timers"] if t["interrupting"])
    assert deadline["timer"] == "timer_overdue"

    with app.app_context():
        later = utcnow() + timedelta(days=6)
        assert cases.due_timer_case_ids(utcnow()) == []
        case_ids = cases.due_timer_case_ids(later)
        assert len(case_ids) == 1
        assert cases.fire_case_timers(runtime(), case_ids[0], at=later) is not None
        commit()
        # Firing again changes nothing: the timer is no longer waiting.
        assert cases.fire_case_timers(runtime(), case_ids[0], at=later) is None
        commit()
        fired = db.session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.kind == "timer_fired"))
        assert fired == 1

    body = call(client, world, "GET", f"/api/cases/{case['reference']}").get_json()
    assert [t["task"] for t in body["tasks"]] == ["supervise"]
    response = complete(client, world, case["reference"], "supervise", "supervisor", SUPERVISE)
    assert response.status_code == 200
    assert [t["task"] for t in response.get_json()["next_tasks"]] == ["reinspect"]


def test_openapi_is_served(app, client, world):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    paths = spec.get_json()["paths"]
    for path in ("/api/cases", "/api/cases/{reference}", "/api/cases/{reference}/events",
                 "/api/work-items", "/api/work-items/{item_id}/complete", "/api/processes"):
        assert path in paths
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.data
