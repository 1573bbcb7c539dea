"""Migrating a running case to a new version: safe only when nothing the case has reached
(completed, started, ready or waiting) changed or was removed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.unit.test_diffing import build, edit, files_of
from workflows.engine import Engine
from workflows.migration import migrate_run
from workflows.roles import RoleCatalogue
from tests.unit.test_diffing import ROOT

AT = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
REGISTER = {
    "source": "resident", "category": "garbage_exposed", "description": "小区东门垃圾堆放", "location": "桂花苑2栋",
    "grid_id": "G1", "verified": True, "photo_before": "a.jpg", "disposition": "file",
}


@pytest.fixture(scope="module")
def roles():
    return RoleCatalogue.from_file(ROOT / "roles.json")


@pytest.fixture(scope="module")
def engine(roles):
    return Engine(roles)


@pytest.fixture(scope="module")
def v1(roles):
    return build(files_of("incident_abcd"), roles, "incident_abcd")


def v2_with(roles, *replacements):
    return build(edit(files_of("incident_abcd"), "incident_abcd.bpmn", *replacements), roles, "incident_abcd")


def test_a_change_ahead_of_the_case_is_safe_and_keeps_tasks(engine, roles, v1):
    run, _ = engine.start(v1, {}, at=AT)
    v2 = v2_with(roles, ('name="值班长结案"', 'name="值班长审核结案"'),
                 ("deadline(limit_amount, limit_unit, fraction=0.8)", "deadline(limit_amount, limit_unit, fraction=0.75)"))
    result = migrate_run(engine, run, v2, at=AT + timedelta(hours=1))
    assert result.safe, result.problems
    assert result.run.definition is v2
    assert [t.task_id for t in result.run.ready_tasks()] == [t.task_id for t in run.ready_tasks()]
    assert run.definition is v1  # the given run is untouched
    # the migrated case goes on, on the new version
    outcome = result.run.complete(result.run.ready_tasks()[0].task_id, REGISTER, at=AT + timedelta(hours=2))
    assert outcome.ready
    saved = engine.dump(result.run)
    assert engine.load(v2, saved).ready_tasks()


def test_renaming_the_ready_task_is_unsafe(engine, roles, v1):
    run, _ = engine.start(v1, {}, at=AT)
    result = migrate_run(engine, run, v2_with(roles, ('name="登记核实"', 'name="登记"')), at=AT)
    assert not result.safe and result.run is None
    assert any(p.element_id == "register" and p.state == "READY" and "name" in p.reason for p in result.problems)
    assert result.summary()["safe"] is False


def test_changing_a_completed_task_is_unsafe(engine, roles, v1):
    run, _ = engine.start(v1, {}, at=AT)
    run.complete(run.ready_tasks()[0].task_id, REGISTER, at=AT + timedelta(minutes=10))
    # register is now completed: giving it another form is not safe
    result = migrate_run(engine, run, v2_with(roles, ('value="register.form.json"', 'value="grid_handle.form.json"')),
                         at=AT + timedelta(minutes=20))
    assert not result.safe
    assert any(p.element_id == "register" and p.state == "COMPLETED" for p in result.problems), result.problems


def test_changing_a_waiting_timer_is_unsafe_and_keeps_deadlines_when_safe(engine, roles, v1):
    run, _ = engine.start(v1, {"category": "garbage_exposed"}, at=AT)
    outcome = run.complete(run.ready_tasks()[0].task_id, REGISTER, at=AT + timedelta(minutes=10))
    waiting = {t.spec_id: t.due_at for t in outcome.timers}
    if "timer_a_warning" not in waiting:
        pytest.skip(f"the case is not at an A-class task ({sorted(waiting)})")
    result = migrate_run(engine, run, v2_with(
        roles, ("deadline(limit_amount, limit_unit, fraction=0.8)", "deadline(limit_amount, limit_unit, fraction=0.75)")),
        at=AT + timedelta(hours=1))
    assert not result.safe
    assert any(p.element_id == "timer_a_warning" and p.state == "WAITING" for p in result.problems)
    # an unrelated change is safe and leaves the waiting deadlines exactly where they were
    safe = migrate_run(engine, run, v2_with(roles, ('name="值班长结案"', 'name="值班长审核结案"')), at=AT + timedelta(hours=1))
    assert safe.safe, safe.problems
    assert {t.spec_id: t.due_at for t in safe.run.waiting_timers()} == waiting


def test_migration_to_another_process_is_refused(engine, roles, v1):
    run, _ = engine.start(v1, {}, at=AT)
    other = build(files_of("grid_quick"), roles, "grid_quick")
    result = migrate_run(engine, run, other, at=AT)
    assert not result.safe and "grid_quick" in str(result.problems[0])
