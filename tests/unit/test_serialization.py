"""Saving and restoring case workflows (workflows.serialization through Engine.dump/load).

The saved state leaves the process spec out; a loaded run must be indistinguishable
from the one that was saved and must be able to go on: user tasks, timers, messages
and scripts (the restricted script engine has to be put back after a load).
"""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG as SPIFF_CONFIG

from workflows.definitions import load_folder
from workflows.engine import CaseRun, Engine
from workflows.roles import RoleCatalogue
from workflows.serialization import SERIALIZER_VERSION, SavedState, StateFormatError

ROOT = Path(__file__).resolve().parents[2]
ROLES = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")
FIXTURES = ROOT / "tests" / "fixtures" / "engine"

from tests.grid_quick_data import (  # noqa: F401 - shared form data
    CLOSE, CST, HANDLE, REGISTER, REINSPECT, REVIEW_DISPATCH, REVIEW_SELF, SUPERVISE, T0,
)

# Each step: ("complete", task, data) or ("fire", None, None) at the step's time.
SELF_WITH_WARNING = [
    ("complete", "register", REGISTER),
    ("complete", "review", REVIEW_SELF),
    ("fire", None, None),  # +2 days: the non-interrupting warning
    ("complete", "community_handle", HANDLE),
    ("complete", "reinspect", REINSPECT),
    ("complete", "close", CLOSE),
]
DISPATCH_WITH_ESCALATION = [
    ("complete", "register", REGISTER),
    ("complete", "review", REVIEW_DISPATCH),
    ("fire", None, None),  # +6 days: past the 5-day deadline
    ("complete", "supervise", SUPERVISE),
    ("complete", "reinspect", REINSPECT),
    ("complete", "close", CLOSE),
]
DISPATCH_IN_TIME = [
    ("complete", "register", REGISTER),
    ("complete", "review", REVIEW_DISPATCH),
    ("complete", "department_handle", HANDLE),
    ("complete", "reinspect", REINSPECT),
    ("complete", "close", CLOSE),
]


@pytest.fixture(scope="module")
def grid_quick():
    result = load_folder(ROOT / "bpmn", ROLES)
    assert result.ok, result.issues
    return next(d for d in result.definitions if d.process_id == "grid_quick")


@pytest.fixture(scope="module")
def fixtures():
    result = load_folder(FIXTURES, ROLES)
    assert result.ok, result.issues
    return {d.process_id: d for d in result.definitions}


@pytest.fixture(scope="module")
def engine():
    return Engine(ROLES)


def all_task_ids(run: CaseRun) -> dict[str, tuple[str, int]]:
    return {str(t.id): (t.task_spec.name, t.state) for t in run.workflow.get_tasks()}


def round_trip(engine: Engine, run: CaseRun) -> CaseRun:
    """Dump, load, and check the loaded run is the same case."""
    saved = engine.dump(run)
    assert isinstance(saved, SavedState) and saved.serializer_version == SERIALIZER_VERSION
    loaded = engine.load(run.definition, saved)
    assert loaded is not run and loaded.workflow is not run.workflow
    assert loaded.ready_tasks() == run.ready_tasks()
    assert loaded.waiting_timers() == run.waiting_timers()
    assert loaded.data == run.data
    assert loaded.ended == run.ended
    assert all_task_ids(loaded) == all_task_ids(run)  # same ids, same specs, same states
    assert engine.dump(loaded).state == saved.state  # loading changes nothing
    return loaded


@pytest.mark.parametrize(
    "steps", [SELF_WITH_WARNING, DISPATCH_WITH_ESCALATION, DISPATCH_IN_TIME],
    ids=["self-with-warning", "dispatch-with-escalation", "dispatch-in-time"],
)
def test_round_trip_at_every_step_and_go_on_from_the_loaded_copy(engine, grid_quick, steps):
    run, _ = engine.start(grid_quick, {"source": "hotline"}, at=T0)
    run = round_trip(engine, run)
    at = T0
    for kind, spec_id, data in steps:
        if kind == "fire":
            at += timedelta(days=6)
            outcome = run.fire_timers(at=at)
            assert outcome.completed, "the timer restored from the saved state must fire"
        else:
            at += timedelta(hours=2)
            (ready,) = run.ready_tasks()
            assert ready.spec_id == spec_id
            outcome = run.complete(ready.task_id, data, at=at, role=ready.role)
        # From here on, only the loaded copy is used.
        run = round_trip(engine, run)
        assert run.ready_tasks() == outcome.ready
        assert run.data == dict(outcome.data)
    assert run.ended
    assert run.data["source"] == "hotline" and run.data["summary"] == CLOSE["summary"]


def test_due_times_survive_a_round_trip(engine, grid_quick):
    run, outcome = engine.start(grid_quick, {}, at=T0)
    run.complete(outcome.ready[0].task_id, REGISTER, at=T0, role="grid_member")
    reviewed = T0 + timedelta(hours=3)
    run.complete(run.ready_tasks()[0].task_id, REVIEW_DISPATCH, at=reviewed, role="community_staff")
    loaded = round_trip(engine, run)
    (department,) = loaded.ready_tasks()
    assert department.due_at == reviewed + timedelta(days=5)
    (timer,) = loaded.waiting_timers()
    assert timer.attached_to == department.task_id and timer.interrupting
    # Not due yet after loading either; then due.
    assert loaded.fire_timers(at=reviewed + timedelta(days=4)).completed == ()
    assert [r.spec_id for r in loaded.fire_timers(at=reviewed + timedelta(days=5, minutes=1)).ready] == ["supervise"]


def test_a_loaded_case_still_receives_its_message(engine, fixtures):
    run, _ = engine.start(fixtures["message_wait"], {"ticket": "A-1"}, at=T0)
    loaded = round_trip(engine, run)
    outcome = loaded.deliver_message("district_reply", {"answer": "同意"}, at=T0 + timedelta(hours=1))
    assert [r.spec_id for r in outcome.ready] == ["read_reply"]
    assert outcome.data == {"ticket": "A-1", "reply": {"answer": "同意"}}
    assert round_trip(engine, loaded).data["reply"] == {"answer": "同意"}


def test_a_loaded_case_runs_scripts_with_the_restricted_engine_and_case_clock(engine, fixtures):
    # Deserialization does not restore the script engine; Engine.load must. The default
    # SpiffWorkflow engine has no now()/isoformat(), so the script would fail without it.
    run, outcome = engine.start(fixtures["clock_script"], {}, at=T0)
    loaded = round_trip(engine, run)
    assert loaded.workflow.script_engine is engine.script_engine
    confirmed = T0 + timedelta(days=1)
    outcome = loaded.complete(loaded.ready_tasks()[0].task_id, {}, at=confirmed, role="grid_member")
    assert outcome.data["confirmed_at"] == confirmed.astimezone(timezone.utc).isoformat()


def test_stored_state_leaves_the_spec_out(engine, grid_quick):
    run, _ = engine.start(grid_quick, {}, at=T0)
    saved = engine.dump(run)
    document = json.loads(saved.state)
    assert "spec" not in document and "subprocess_specs" not in document
    assert "task_specs" not in saved.state  # no spec hidden deeper down either
    # A plain BpmnWorkflowSerializer() cannot even serialize Spiff user tasks; the
    # spiff-configured one embeds the whole spec.
    full = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG)).serialize_json(run.workflow)
    assert "spec" in json.loads(full)
    assert len(saved.state) < 0.5 * len(full), (len(saved.state), len(full))


def test_stored_state_is_plain_json_with_readable_text(engine, grid_quick):
    run, outcome = engine.start(grid_quick, {}, at=T0)
    run.complete(outcome.ready[0].task_id, REGISTER, at=T0, role="grid_member")
    saved = engine.dump(run)
    assert REGISTER["description"] in saved.state  # ensure_ascii=False: Chinese stays readable
    assert json.loads(saved.state)["tasks"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(date(2026, 3, 1), id="date"),
        pytest.param(Decimal("1234.50"), id="decimal"),
        pytest.param(datetime(2026, 3, 1, 8, 0, tzinfo=CST), id="datetime"),
        pytest.param(timedelta(days=2, hours=3), id="timedelta"),
    ],
)
def test_typed_values_in_task_data_survive(engine, grid_quick, value):
    run, outcome = engine.start(grid_quick, {"value": value}, at=T0)
    run.complete(outcome.ready[0].task_id, REGISTER, at=T0, role="grid_member")
    loaded = engine.load(grid_quick, engine.dump(run))
    assert loaded.data["value"] == value
    assert type(loaded.data["value"]) is type(value)


def test_a_set_comes_back_as_a_sorted_list(engine, grid_quick):
    run, _ = engine.start(grid_quick, {"tags": {"noise", "garbage", "night"}}, at=T0)
    loaded = engine.load(grid_quick, engine.dump(run))
    assert loaded.data["tags"] == ["garbage", "night", "noise"]
    assert loaded.ready_tasks() == run.ready_tasks()


def test_nested_json_values_survive(engine, grid_quick):
    data = {"contact": {"name": "李", "phones": ["123", "456"]}, "count": 3, "ratio": 0.5, "none": None}
    run, _ = engine.start(grid_quick, data, at=T0)
    assert engine.load(grid_quick, engine.dump(run)).data == data


@pytest.mark.parametrize("version", ["1.4", "1.0", "", "2.0"])
def test_wrong_serializer_version_is_refused(engine, grid_quick, version):
    run, _ = engine.start(grid_quick, {}, at=T0)
    saved = engine.dump(run)
    with pytest.raises(StateFormatError, match="serializer"):
        engine.load(grid_quick, SavedState(saved.state, version))


@pytest.mark.parametrize("text", ["", "not json", "{\"tasks\": ", "\x00"])
def test_text_that_is_not_json_is_refused(engine, grid_quick, text):
    with pytest.raises(StateFormatError):
        engine.load(grid_quick, SavedState(text, SERIALIZER_VERSION))


@pytest.mark.parametrize("text", ["{}", "[]", "null", "42", '{"tasks": 5}', '{"tasks": {}, "root": "x"}'])
def test_json_that_is_not_a_saved_workflow_is_refused(engine, grid_quick, text):
    with pytest.raises(StateFormatError):
        engine.load(grid_quick, SavedState(text, SERIALIZER_VERSION))


def test_task_ids_are_stable_across_round_trips(engine, grid_quick):
    run, outcome = engine.start(grid_quick, {}, at=T0)
    register = outcome.ready[0].task_id
    ids_before = all_task_ids(run)
    once = engine.load(grid_quick, engine.dump(run))
    twice = engine.load(grid_quick, engine.dump(once))
    assert all_task_ids(twice) == ids_before
    assert twice.ready_tasks()[0].task_id == register
    uuid.UUID(register)  # a real UUID string
    # The id the application stored before the save still completes the task after it.
    outcome = twice.complete(register, REGISTER, at=T0, role="grid_member")
    assert outcome.no_longer_ready == (register,)
