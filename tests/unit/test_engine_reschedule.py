"""CaseRun.reschedule_timer: a deadline extension moves a WAITING boundary timer.

The moved due time must survive dump/load, firing at the old due time must do nothing,
and firing after the new one must take the timer's path. Refusals change nothing.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.grid_quick_data import REGISTER, REVIEW_DISPATCH, REVIEW_SELF, T0
from workflows.definitions import load_folder
from workflows.engine import Engine
from workflows.errors import TaskNotFound, TaskNotReady
from workflows.roles import RoleCatalogue

ROOT = Path(__file__).resolve().parents[2]
ROLES = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")


@pytest.fixture(scope="module")
def grid_quick():
    result = load_folder(ROOT / "bpmn", ROLES)
    assert result.ok, result.issues
    (definition,) = [d for d in result.definitions if d.process_id == "grid_quick"]
    return definition


@pytest.fixture(scope="module")
def engine():
    return Engine(ROLES)


def dispatched(engine, definition, review=REVIEW_DISPATCH):
    run, outcome = engine.start(definition, {}, at=T0)
    run.complete(outcome.ready[0].task_id, REGISTER, at=T0 + timedelta(hours=1), role="grid_member")
    (review_task,) = run.ready_tasks()
    outcome = run.complete(review_task.task_id, review, at=T0 + timedelta(hours=2), role="community_staff")
    return run, outcome


def test_rescheduled_timer_survives_a_round_trip_and_fires_only_at_the_new_time(engine, grid_quick):
    run, outcome = dispatched(engine, grid_quick)
    (timer,) = outcome.timers
    assert timer.spec_id == "timer_overdue" and timer.interrupting
    old_due = timer.due_at
    new_due = old_due + timedelta(days=3)

    run.reschedule_timer(timer.task_id, new_due)
    saved = engine.dump(run)
    loaded = engine.load(grid_quick, saved)

    (moved,) = loaded.waiting_timers()
    assert moved.task_id == timer.task_id and moved.due_at == new_due
    (ready,) = loaded.ready_tasks()
    assert ready.spec_id == "department_handle" and ready.due_at == new_due

    # At the old due time (and a little after) nothing fires.
    outcome = loaded.fire_timers(at=old_due + timedelta(minutes=1))
    assert outcome.completed == ()
    assert [t.spec_id for t in outcome.ready] == ["department_handle"]

    # After the new due time the interrupting timer takes its path to the supervisor.
    again = engine.load(grid_quick, engine.dump(loaded))
    outcome = again.fire_timers(at=new_due + timedelta(minutes=1))
    assert "timer_overdue" in [s.spec_id for s in outcome.completed]
    assert [t.spec_id for t in outcome.ready] == ["supervise"]


def test_a_timer_can_also_be_brought_forward(engine, grid_quick):
    run, outcome = dispatched(engine, grid_quick)
    (timer,) = outcome.timers
    earlier = T0 + timedelta(hours=5)
    run.reschedule_timer(timer.task_id, earlier)
    outcome = run.fire_timers(at=earlier + timedelta(seconds=1))
    assert [t.spec_id for t in outcome.ready] == ["supervise"]


def test_non_interrupting_warning_timer_moves_too(engine, grid_quick):
    run, outcome = dispatched(engine, grid_quick, review=REVIEW_SELF)
    (warning,) = outcome.timers
    assert warning.spec_id == "timer_warning" and not warning.interrupting
    new_due = warning.due_at + timedelta(hours=10)
    run.reschedule_timer(warning.task_id, new_due)
    loaded = engine.load(grid_quick, engine.dump(run))
    assert loaded.ready_tasks()[0].warn_at == new_due
    assert loaded.fire_timers(at=warning.due_at + timedelta(minutes=1)).completed == ()
    fired = loaded.fire_timers(at=new_due + timedelta(minutes=1))
    assert "timer_warning" in [s.spec_id for s in fired.completed]


def test_refusals_change_nothing(engine, grid_quick):
    run, outcome = dispatched(engine, grid_quick)
    before = engine.dump(run).state
    (ready,) = outcome.ready
    with pytest.raises(TaskNotFound):
        run.reschedule_timer("00000000-0000-0000-0000-000000000000", T0)
    with pytest.raises(TaskNotFound):
        run.reschedule_timer("not-a-uuid", T0)
    with pytest.raises(TaskNotReady):
        run.reschedule_timer(ready.task_id, T0 + timedelta(days=9))  # a user task, not a timer
    with pytest.raises(ValueError):
        run.reschedule_timer(outcome.timers[0].task_id, datetime(2026, 3, 9, 9, 0))  # naive
    assert engine.dump(run).state == before


# --- declared time limits (timeLimit / timeLimitWarning on a user task) ------------

DECLARED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="Definitions_declared" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="declared" name="声明时限" isExecutable="true">
    <bpmn:laneSet id="LaneSet_declared">
      <bpmn:lane id="lane_member" name="网格员">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>first</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>second</bpmn:flowNodeRef><bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="first" name="第一步">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="timeLimit" value="%(limit)s" />%(warning)s
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="second" name="第二步"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="first" />
    <bpmn:sequenceFlow id="f2" sourceRef="first" targetRef="second" />
    <bpmn:sequenceFlow id="f3" sourceRef="second" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def declared(tmp_path, limit, warning=None):
    folder = tmp_path / "declared"
    folder.mkdir()
    extra = f'\n        <spiffworkflow:property name="timeLimitWarning" value="{warning}" />' if warning else ""
    (folder / "declared.bpmn").write_text(DECLARED % {"limit": limit, "warning": extra}, encoding="utf-8")
    return load_folder(folder, ROLES)


def test_a_declared_limit_gives_due_and_warning_on_the_business_calendar(tmp_path, engine):
    from workflows.calendar import BusinessCalendar

    result = declared(tmp_path, "2 working_days", "0.5")
    assert result.ok, result.issues
    (definition,) = result.definitions
    run, outcome = engine.start(definition, {}, at=T0)  # Monday 09:00 Shanghai
    (first,) = outcome.ready
    calendar = BusinessCalendar.default()
    assert first.limit_declared
    assert first.due_at == calendar.add_working_days(T0, 2)
    assert first.warn_at == calendar.add_working_days(T0, 1)
    assert outcome.timers == ()  # no timers: the application watches it

    # The start time is kept in the saved state: a later load gives the same times.
    loaded = engine.load(definition, engine.dump(run))
    (again,) = loaded.ready_tasks()
    assert (again.due_at, again.warn_at) == (first.due_at, first.warn_at)
    outcome = loaded.complete(first.task_id, {}, at=T0 + timedelta(days=1))
    (second,) = outcome.ready
    assert second.due_at is None and not second.limit_declared


@pytest.mark.parametrize("limit, warning", [
    ("2 fortnights", None), ("two working_days", None), ("0 working_hours", None), ("4", None),
    ("4 working_hours", "1.5"), ("4 working_hours", "soon"),
])
def test_invalid_declared_limits_are_validation_errors(tmp_path, limit, warning):
    result = declared(tmp_path, limit, warning)
    assert not result.ok
    assert any(issue.code == "time_limit_invalid" for issue in result.issues), result.issues


def test_boundary_timers_of_a_task(engine, grid_quick):
    run, outcome = dispatched(engine, grid_quick)
    (ready,) = outcome.ready
    (timer,) = run.boundary_timers(ready.task_id)
    assert timer.spec_id == "timer_overdue" and timer.task_id == outcome.timers[0].task_id
    run2, outcome2 = engine.start(grid_quick, {}, at=T0)
    assert run2.boundary_timers(outcome2.ready[0].task_id) == ()   # register has none
    # A fired warning is no longer waiting: nothing to move.
    run3, outcome3 = dispatched(engine, grid_quick, review=REVIEW_SELF)
    (warning,) = outcome3.timers
    run3.fire_timers(at=warning.due_at + timedelta(minutes=1))
    assert run3.boundary_timers(run3.ready_tasks()[0].task_id) == ()
