"""Two people completing the same task at the same moment: one wins, the other gets 409.

Real threads, real connections, real commits, on SQLite and PostgreSQL. The
engine step is slowed down so that both requests are certainly inside the
critical section at once; without the case lock both would succeed and the
last save would silently win.
"""
from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from tests.integration.helpers import REGISTER, SELF_PATH, call, open_item, start_case, walk


def _race(app, world, url: str, payloads: list[tuple[str, dict]]) -> list[int]:
    barrier = threading.Barrier(len(payloads))
    statuses: list[int] = [0] * len(payloads)

    def worker(index: int, user: str, body: dict) -> None:
        client = app.test_client()
        barrier.wait()
        statuses[index] = client.post(url, json=body, headers=world.auth(user)).status_code

    threads = [threading.Thread(target=worker, args=(i, user, body)) for i, (user, body) in enumerate(payloads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def _slow_engine(monkeypatch):
    from app.cases import service as cases

    original = cases.load_run

    def slow_load_run(case, rt):
        time.sleep(0.3)  # hold the critical section long enough for the other request to arrive
        return original(case, rt)

    monkeypatch.setattr(cases, "load_run", slow_load_run)


def test_two_completions_of_the_same_task(app, client, world, monkeypatch):
    from app.cases.models import Case, CaseEvent
    from app.db import db
    from app.work.models import WorkItem

    case = start_case(client, world)
    item = open_item(client, world, case["reference"], "register")
    _slow_engine(monkeypatch)

    other = dict(REGISTER, description="另一人同时提交的描述内容")
    statuses = _race(app, world, f"/api/work-items/{item['id']}/complete",
                     [("member", {"data": REGISTER}), ("member", {"data": other})])
    assert sorted(statuses) == [200, 409], statuses

    with app.app_context():
        row = db.session.scalar(select(Case).where(Case.reference == case["reference"]))
        completed = db.session.scalar(
            select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == row.id, CaseEvent.kind == "task_completed")
        )
        assert completed == 1
        items = db.session.execute(
            select(WorkItem.spec_id, WorkItem.state).where(WorkItem.case_id == row.id).order_by(WorkItem.id)
        ).all()
        assert [tuple(i) for i in items] == [("register", "completed"), ("review", "ready")]
        winner_description = row.data["description"]
        assert winner_description in (REGISTER["description"], other["description"])
        db.session.remove()

    # The stored state is consistent: the case continues normally from the winner's data.
    walk(client, world, case["reference"], SELF_PATH[1:])
    final = call(client, world, "GET", f"/api/cases/{case['reference']}").get_json()
    assert final["status"] == "completed"
    assert final["data"]["description"] == winner_description


def test_claim_race_has_one_winner(app, client, world, monkeypatch):
    from app.cases import service as cases

    case = start_case(client, world)
    walk(client, world, case["reference"], SELF_PATH[:4])
    item = open_item(client, world, case["reference"], "close")

    original = cases.record

    def slow_record(*args, **kwargs):
        time.sleep(0.3)
        return original(*args, **kwargs)

    monkeypatch.setattr(cases, "record", slow_record)
    statuses = _race(app, world, f"/api/work-items/{item['id']}/claim", [("chief", {}), ("chief2", {})])
    assert sorted(statuses) == [200, 409], statuses
    events = call(client, world, "GET", f"/api/cases/{case['reference']}/events").get_json()
    assert [e["kind"] for e in events["items"]].count("task_claimed") == 1


def test_many_cases_started_at_once_get_distinct_references(app, client, world):
    body = {"process_id": "grid_quick", "title": "并发上报", "grid": "S-C1-G1", "data": {}}
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker() -> None:
        local = app.test_client()
        barrier.wait()
        response = local.post("/api/cases", json=body, headers=world.auth("member"))
        with lock:
            results.append(response.get_json().get("reference") if response.status_code == 201 else str(response.status_code))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6
    assert len(set(results)) == 6, results
    assert all(r.startswith("SJ-") for r in results), results
