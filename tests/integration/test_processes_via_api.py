"""Every shipped procedure, played through the REST API as its handlers would.

Each scenario file next to a BPMN is replayed over HTTP: the start, every task completed by
a user holding the task's role (found in their queue), BPMN messages posted to the case, and
the scenario's clock jumps turned into timer firing through the service (as the sweeper would
do when the time comes). Every expectation in the file is checked against the API's answers.
"""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import ROLE_USERS
from tests.integration.helpers import call, open_item

ROOT = Path(__file__).resolve().parents[2]
# Scenarios whose expectations depend on the exact time of day on the business calendar
# (warnings at 80% of a working-hours limit, a posting window counted from a fixed moment)
# need the scenario runner's fake clock; over HTTP the server's real clock decides. They run
# in tests/integration/test_process_scenarios.py instead.
FAKE_CLOCK_ONLY = {
    "appeal_loop/10_urgent_assign_overdue_secretary",
    "appeal_loop/11_community_resolve_overdue_secretary",
    "appeal_loop/12_department_resolve_overdue_secretary",
    "four_deliberations/05_villagers_household_reps_objection_dismissed",
    "four_deliberations/06_residents_no_quorum_objection_upheld",
    "grid_quick/self_warning",
}
SCENARIOS = [
    path for path in sorted(ROOT.glob("bpmn/*/scenarios/*.json"))
    if f"{path.parent.parent.name}/{path.stem}" not in FAKE_CLOCK_ONLY
]
# Data keys whose values depend on the scenario's fixed clock (the API runs on the real clock).
CLOCK_DEPENDENT = {"deliberation_finished_at", "posting_started_at", "plan_sent_on"}


def _duration(text: str) -> timedelta:
    from workflows.scripting import parse_duration

    return parse_duration(text)


def _case(client, world, reference):
    response = call(client, world, "GET", f"/api/cases/{reference}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _check(client, world, reference, expect, where):
    case = _case(client, world, reference)
    if "ready" in expect:
        assert sorted(t["task"] for t in case["tasks"]) == sorted(expect["ready"]), where
    if "timers" in expect:
        assert sorted(t["timer"] for t in case["timers"]) == sorted(expect["timers"]), where
    for key, value in (expect.get("data") or {}).items():
        if key in CLOCK_DEPENDENT:
            continue
        assert case["data"].get(key) == value, (where, key, case["data"].get(key), value)
    if "ended" in expect:
        assert (case["status"] == "completed") is expect["ended"], where
    if expect.get("end_event"):
        assert case["end_event"] == expect["end_event"], where


def _fire_timers(app, reference, advance: timedelta):
    from app.cases import service as cases
    from app.cases.models import Case
    from app.db import commit, db
    from app.runtime import runtime
    from app.timeutil import utcnow
    from sqlalchemy import select

    with app.app_context():
        case_id = db.session.scalar(select(Case.id).where(Case.reference == reference))
        cases.fire_case_timers(runtime(), case_id, at=utcnow() + advance)
        commit()
        db.session.remove()


def play(app, client, world, scenario: dict, grid: str = "S-C1-G1") -> str:
    response = call(client, world, "POST", "/api/cases", "member", json={
        "process_id": scenario["process"], "title": scenario.get("name", "scenario")[:300],
        "grid": grid, "data": scenario["start"].get("data", {}),
    })
    assert response.status_code == 201, response.get_json()
    reference = response.get_json()["reference"]
    drive(app, client, world, reference, scenario.get("steps", []), scenario.get("name"))
    _check(client, world, reference, scenario.get("expect") or {}, f"{scenario.get('name')}: end")
    return reference


def drive(app, client, world, reference: str, steps: list, name=None, *, check: bool = True) -> None:
    for index, step in enumerate(steps):
        where = f"{name}: steps[{index}]"
        if "complete" in step:
            item = open_item(client, world, reference, step["complete"])
            user = ROLE_USERS[step.get("role") or item["role"]]
            done = call(client, world, "POST", f"/api/work-items/{item['id']}/complete", user,
                        json={"data": step.get("data", {})})
            assert done.status_code == 200, (where, done.get_json())
        elif "message" in step:
            sent = call(client, world, "POST", f"/api/cases/{reference}/messages", "admin", json={
                "name": step["message"], "payload": step.get("payload", {}), "correlations": step.get("correlations", {}),
            })
            assert sent.status_code == 200, (where, sent.get_json())
        elif "advance" in step:
            _fire_timers(app, reference, _duration(step["advance"]) + timedelta(seconds=1))
        if check and "expect" in step:
            _check(client, world, reference, step["expect"], where)


@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in SCENARIOS])
def test_scenario_through_the_api(app, client, world, path):
    scenario = json.loads(path.read_text(encoding="utf-8"))
    play(app, client, world, scenario)


def test_every_process_has_an_api_scenario():
    processes = {p.parent.parent.name for p in SCENARIOS}
    assert {"grid_quick", "appeal_loop", "four_deliberations"} <= processes


def _load(relative: str) -> dict:
    return json.loads((ROOT / "bpmn" / relative).read_text(encoding="utf-8"))


def test_a_demand_that_needs_deliberation_waits_for_a_four_deliberations_case(app, client, world):
    """社区研判 → 提请议事 starts a 四议两公开 case in the same grid (CASE_LINKS); when that
    case ends, its outcome reaches the waiting demand, which goes on to 化解."""
    appeal = _load("appeal_loop/scenarios/06_deliberation_passed.json")
    response = call(client, world, "POST", "/api/cases", "member", json={
        "process_id": "appeal_loop", "title": "东门垃圾分类亭", "grid": "S-C1-G1", "data": appeal["start"]["data"],
    })
    parent = response.get_json()["reference"]
    drive(app, client, world, parent, appeal["steps"][:2], "appeal", check=False)  # 网格报单, 社区派单 (议事)
    assert _case(client, world, parent)["tasks"] == []  # waiting for the deliberation

    queue = call(client, world, "GET", "/api/work-items?process_id=four_deliberations", "branch").get_json()
    assert queue["total"] == 1
    child = queue["items"][0]["case"]["reference"]
    assert child.startswith("YS-")
    child_case = _case(client, world, child)
    assert child_case["data"]["parent_case"] == parent
    assert child_case["data"]["topic"] == "东门垃圾分类亭迁址"
    assert child_case["grid"]["code"] == "S-C1-G1"

    deliberation = _load("four_deliberations/scenarios/01_one_shoulder_villagers_adults_completed.json")
    drive(app, client, world, child, deliberation["steps"], "deliberation", check=False)
    assert _case(client, world, child)["status"] == "completed"

    after = _case(client, world, parent)
    assert [t["task"] for t in after["tasks"]] == ["community_resolve"]
    assert after["data"]["deliberation_result"]["passed"] is True
    assert "决议" in after["data"]["deliberation_result"]["resolution"]
    events = call(client, world, "GET", f"/api/cases/{parent}/events").get_json()["items"]
    assert [e["kind"] for e in events][-1] == "message_received"
    assert events[-1]["payload"]["name"] == "deliberation_concluded"
    thrown = [e for e in events if "deliberation_requested" in e["payload"]["effects"].get("thrown", [])]
    assert len(thrown) == 1
