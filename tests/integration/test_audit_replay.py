"""Every scenario of the shipped processes, played through the service layer on its own
fake clock (start, completions by a user of the task's role, messages, timers fired one
due time after another as the sweeper would), then verified: the hash chain holds and a
replay from the pinned version and the events alone reproduces every step and the stored
state. Then tampering: one changed field, a deleted event, two events swapped, a changed
stored state — each named exactly. On SQLite and PostgreSQL (the trigger that refuses
UPDATE/DELETE on case_events is disabled first, as a superuser tampering would)."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.append_only import events_writable
from tests.conftest import ROLE_USERS
from workflows.scenarios import TIMER_LATENCY, load_scenario

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("incident_abcd", "appeal_loop", "four_deliberations", "grid_quick")
GAP = timedelta(minutes=10)


def play_scenario(path: Path, grid: str = "S-C1-G1") -> str:
    """Play one scenario file through the services (inside an app context); commit per step."""
    from app.cases import service as cases
    from app.cases.models import Case, Timer
    from app.db import commit, db
    from app.people.models import User
    from app.runtime import runtime
    from app.work import service as work
    from app.work.models import OPEN_STATES, WorkItem

    rt = runtime()
    scenario = load_scenario(path)
    clock = scenario.start_at
    member = db.session.scalar(select(User).where(User.username == "member"))
    case = cases.start_case(rt, process_id=scenario.process, title=scenario.name[:300], grid_code=grid,
                            data=dict(scenario.start_data), actor=member, at=clock)
    commit()
    reference, case_id = case.reference, case.id
    for step in scenario.steps:
        if step.kind == "expect":
            continue
        if step.kind == "advance":
            target = step.advance_to if step.advance_to is not None else clock + step.advance_by
            while True:
                due = sorted(db.session.scalars(select(Timer.due_at).where(
                    Timer.case_id == case_id, Timer.state == "waiting", Timer.due_at <= target)))
                if not due:
                    break
                fire_at = max(min(due[0] + TIMER_LATENCY, target) if due[0] < target else due[0] + TIMER_LATENCY, clock)
                cases.fire_case_timers(rt, case_id, at=fire_at)
                commit()
                clock = fire_at
            clock = max(clock, target)
            continue
        at = step.at if step.at is not None else clock + (step.after if step.after is not None else GAP)
        if step.kind == "complete":
            items = list(db.session.scalars(select(WorkItem).where(
                WorkItem.case_id == case_id, WorkItem.spec_id == step.target, WorkItem.state.in_(OPEN_STATES))))
            assert len(items) == 1, (path.name, step.where, [i.spec_id for i in items])
            username = ROLE_USERS[step.role or items[0].role]
            user = db.session.scalar(select(User).where(User.username == username))
            work.complete(rt, items[0].id, user, dict(step.data), at=at)
        else:
            cases.deliver_message(rt, reference, name=step.target, payload=dict(step.payload),
                                  correlations=dict(step.correlations), actor=None, at=at)
        commit()
        clock = at
    final = db.session.scalar(select(Case).where(Case.id == case_id))
    if scenario.expect and "ended" in scenario.expect:
        assert (final.status == "completed") is scenario.expect["ended"], path.name
    if scenario.expect and scenario.expect.get("end_event"):
        assert final.end_event == scenario.expect["end_event"], path.name
    db.session.remove()
    return reference


@pytest.mark.parametrize("process", PROCESSES)
def test_every_scenario_replays_and_matches(app, world, process):
    from app.audit import service
    from app.cases.models import Case
    from app.db import db
    from app.runtime import runtime

    paths = sorted((ROOT / "bpmn" / process / "scenarios").glob("*.json"))
    assert paths
    with app.app_context():
        references = [play_scenario(path) for path in paths]
        verdicts = list(service.verify_all(runtime()))
        failures = [v.line() for v in verdicts if not v.ok]
        assert not failures, "\n".join(failures)
        # every scenario's case, plus any case a link started (a deliberation for a demand)
        assert {v.reference for v in verdicts} >= set(references)
        assert sum(v.replayed for v in verdicts) >= len(references)
        closed = db.session.scalar(select(db.func.count()).select_from(Case).where(Case.status == "completed"))
        assert closed >= 1
        db.session.remove()


# -- tampering --------------------------------------------------------------------------
@pytest.fixture
def closed_case(app, world):
    """A closed incident case with rework (several events of every workflow kind)."""
    with app.app_context():
        return play_scenario(ROOT / "bpmn" / "incident_abcd" / "scenarios" / "07_b_rework_twice_to_c.json")


def _tamper(app, sql: str, **params) -> None:
    from app.db import db

    with app.app_context():
        with db.engine.begin() as conn, events_writable(conn):
            conn.execute(text(sql), params)


def _verify(app, reference):
    from app.audit import service
    from app.cases.models import Case
    from app.db import db
    from app.runtime import runtime

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference))
        verdict = service.verify_case(case, runtime())
        db.session.remove()
        return verdict


def _case_id(app, reference):
    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        value = db.session.scalar(select(Case.id).where(Case.reference == reference))
        db.session.remove()
        return value


def _event(app, case_id, seq):
    from app.cases.models import CaseEvent
    from app.db import db

    with app.app_context():
        event = db.session.scalar(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.seq == seq))
        result = (event.id, event.kind, dict(event.payload))
        db.session.remove()
        return result


def test_untouched_case_verifies(app, closed_case):
    verdict = _verify(app, closed_case)
    assert verdict.ok, verdict.line()
    assert verdict.events >= 8


def test_the_database_refuses_updates_and_deletes_of_events(app, closed_case):
    from sqlalchemy.exc import DBAPIError

    from app.db import db

    with app.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE case_events SET actor = 'mallory' WHERE seq = 2"))
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM case_events WHERE seq = 2"))


def test_changed_field_names_the_event(app, closed_case):
    case_id = _case_id(app, closed_case)
    event_id, kind, payload = _event(app, case_id, 3)
    assert kind == "task_completed"
    payload["data"] = {**payload["data"], **{next(iter(payload["data"])): "篡改"}}
    _tamper(app, "UPDATE case_events SET payload = :p WHERE id = :id", p=json.dumps(payload, ensure_ascii=False), id=event_id)
    verdict = _verify(app, closed_case)
    assert not verdict.ok
    assert (verdict.problem.code, verdict.problem.seq, verdict.problem.kind) == ("hash_mismatch", 3, "task_completed")
    assert "event 3 (task_completed): hash mismatch" in verdict.line()


def test_changed_actor_names_the_event(app, closed_case):
    case_id = _case_id(app, closed_case)
    _tamper(app, "UPDATE case_events SET actor = 'someone_else' WHERE case_id = :c AND seq = 4", c=case_id)
    verdict = _verify(app, closed_case)
    assert (verdict.problem.code, verdict.problem.seq) == ("hash_mismatch", 4)


def test_deleted_event_is_named(app, closed_case):
    case_id = _case_id(app, closed_case)
    _tamper(app, "DELETE FROM case_events WHERE case_id = :c AND seq = 5", c=case_id)
    verdict = _verify(app, closed_case)
    assert (verdict.problem.code, verdict.problem.seq) == ("missing_event", 5)
    assert "event 5 is missing" in verdict.line()


def test_deleted_last_event_is_noticed(app, closed_case):
    case_id = _case_id(app, closed_case)
    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        last = db.session.scalar(select(Case.last_event_seq).where(Case.id == case_id))
        db.session.remove()
    _tamper(app, "DELETE FROM case_events WHERE case_id = :c AND seq = :s", c=case_id, s=last)
    verdict = _verify(app, closed_case)
    assert (verdict.problem.code, verdict.problem.seq) == ("missing_event", last)


def test_swapped_events_are_named(app, closed_case):
    case_id = _case_id(app, closed_case)
    # swap seq 3 and 4 (through a free number: (case_id, seq) is unique)
    _tamper(app, "UPDATE case_events SET seq = 100000 WHERE case_id = :c AND seq = 3", c=case_id)
    _tamper(app, "UPDATE case_events SET seq = 3 WHERE case_id = :c AND seq = 4", c=case_id)
    _tamper(app, "UPDATE case_events SET seq = 4 WHERE case_id = :c AND seq = 100000", c=case_id)
    verdict = _verify(app, closed_case)
    assert (verdict.problem.code, verdict.problem.seq) == ("hash_mismatch", 3)


def test_changed_stored_state_is_a_state_mismatch(app, closed_case):
    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == closed_case))
        state = json.loads(db.session.scalar(select(Case.state).where(Case.id == case.id)))
        db.session.remove()
    # Change one completed task's data in the stored workflow state.
    # The workflow's data (what the end of the process left).
    key = next(k for k, v in state["data"].items() if isinstance(v, str))
    state["data"][key] = state["data"][key] + "（篡改）"
    _tamper(app, "UPDATE cases SET state = :s WHERE reference = :r", s=json.dumps(state, ensure_ascii=False), r=closed_case)
    verdict = _verify(app, closed_case)
    assert verdict.problem.code == "state_mismatch", verdict.line()
    assert verdict.problem.seq is None
    assert key in verdict.problem.message
    assert verdict.line().startswith(f"FAIL {closed_case}: final state: state mismatch")


def test_changed_case_data_is_a_state_mismatch(app, closed_case):
    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        data = dict(db.session.scalar(select(Case.data).where(Case.reference == closed_case)))
        db.session.remove()
    data["level"] = "A" if data.get("level") != "A" else "B"
    _tamper(app, "UPDATE cases SET data = :d WHERE reference = :r", d=json.dumps(data, ensure_ascii=False), r=closed_case)
    verdict = _verify(app, closed_case)
    assert verdict.problem.code == "state_mismatch"
    assert "level" in verdict.problem.message


def test_consistent_forgery_of_inputs_is_a_replay_divergence(app, closed_case):
    """Someone rewrites an event's form data *and* recomputes every hash after it (the
    chain holds): the replay no longer reproduces what the event recorded."""
    from app.cases.models import Case, CaseEvent
    from app.db import db
    from workflows.replay import RecordedEvent, event_hash

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == closed_case))
        events = list(db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)))
        rows = [(e.id, e.seq, e.kind, e.at, e.actor, e.role, dict(e.payload)) for e in events]
        db.session.remove()
    target = next(r for r in rows if r[2] == "task_completed" and r[6]["task"] == "community_accept")
    prev = "0" * 64
    updates = []
    for row_id, seq, kind, at, actor, role, payload in rows:
        if row_id == target[0]:
            payload["data"] = {**payload["data"], "accept_decision": "upgrade", "accept_reason": "伪造的理由"}
        event = RecordedEvent(seq, kind, at, actor, role, payload, prev, "")
        digest = event_hash(closed_case, event)
        updates.append((row_id, payload, prev, digest))
        prev = digest
    for row_id, payload, prev_hash, digest in updates:
        _tamper(app, "UPDATE case_events SET payload = :p, prev_hash = :ph, hash = :h WHERE id = :id",
                p=json.dumps(payload, ensure_ascii=False), ph=prev_hash, h=digest, id=row_id)
    _tamper(app, "UPDATE cases SET last_event_hash = :h WHERE reference = :r", h=prev, r=closed_case)
    verdict = _verify(app, closed_case)
    assert verdict.problem is not None
    assert verdict.problem.code in ("replay_diverged",), verdict.line()
    assert verdict.problem.seq == target[1]


def test_changed_task_state_in_stored_state_is_a_state_mismatch(app, closed_case):
    from SpiffWorkflow.util.task import TaskState

    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        state = json.loads(db.session.scalar(select(Case.state).where(Case.reference == closed_case)))
        db.session.remove()
    task = next(t for t in state["tasks"].values() if t["task_spec"] == "chief_close")
    task["state"] = TaskState.READY
    _tamper(app, "UPDATE cases SET state = :s WHERE reference = :r", s=json.dumps(state, ensure_ascii=False), r=closed_case)
    verdict = _verify(app, closed_case)
    assert verdict.problem.code == "state_mismatch", verdict.line()
    assert "task chief_close is READY in the stored state, COMPLETED in the replay" in verdict.problem.message
