"""The engine facade (workflows.engine) against real BPMN: no database, no Flask.

The demo process bpmn/grid_quick is driven through both gateway branches, its
boundary timers are fired under the case clock, and every refusal is checked to
leave the workflow exactly as it was (compared through ``engine.dump``). Small
extra processes live in tests/fixtures/engine/.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from SpiffWorkflow.util.task import TaskState

from workflows import clock
from workflows.definitions import load_folder
from workflows.engine import CaseRun, CompletedStep, Engine, Outcome, ReadyTask, WaitingTimer
from workflows.errors import (
    EngineError,
    FormInvalid,
    MessageNotAwaited,
    ProcessFailed,
    TaskNotFound,
    TaskNotReady,
    WrongRole,
)
from workflows.roles import RoleCatalogue

ROOT = Path(__file__).resolve().parents[2]
ROLES = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")
FIXTURES = ROOT / "tests" / "fixtures" / "engine"

from tests.grid_quick_data import (  # noqa: F401 - shared form data
    CLOSE, CST, HANDLE, REGISTER, REINSPECT, REVIEW_DISPATCH, REVIEW_SELF, SUPERVISE, T0,
)

# (task, role of its lane, form data)
SELF_PATH = [
    ("register", "grid_member", REGISTER),
    ("review", "community_staff", REVIEW_SELF),
    ("community_handle", "community_staff", HANDLE),
    ("reinspect", "grid_member", REINSPECT),
    ("close", "duty_chief", CLOSE),
]
DISPATCH_PATH = [
    ("register", "grid_member", REGISTER),
    ("review", "community_staff", REVIEW_DISPATCH),
    ("department_handle", "department_staff", HANDLE),
    ("reinspect", "grid_member", REINSPECT),
    ("close", "duty_chief", CLOSE),
]


# --- fixtures and helpers -------------------------------------------------------

@pytest.fixture(scope="module")
def grid_quick():
    result = load_folder(ROOT / "bpmn", ROLES)
    assert result.ok, result.issues
    (definition,) = [d for d in result.definitions if d.process_id == "grid_quick"]
    return definition


@pytest.fixture(scope="module")
def fixtures():
    result = load_folder(FIXTURES, ROLES)
    assert result.ok, result.issues
    return {d.process_id: d for d in result.definitions}


@pytest.fixture(scope="module")
def engine():
    return Engine(ROLES)


def state(engine: Engine, run: CaseRun) -> str:
    return engine.dump(run).state


def only_ready(outcome_or_run) -> ReadyTask:
    ready = outcome_or_run.ready if isinstance(outcome_or_run, Outcome) else outcome_or_run.ready_tasks()
    assert len(ready) == 1, ready
    return ready[0]


def task_ids(run: CaseRun, spec_id: str) -> list[str]:
    return [str(t.id) for t in run.workflow.get_tasks(spec_name=spec_id)]


def task_id(run: CaseRun, spec_id: str) -> str:
    (found,) = task_ids(run, spec_id)
    return found


def task_state(run: CaseRun, spec_id: str) -> str:
    (task,) = run.workflow.get_tasks(spec_name=spec_id)
    return TaskState.get_name(task.state)


def spec_ids(steps) -> list[str]:
    return [s.spec_id for s in steps]


def drive(run: CaseRun, path, at: datetime, step: timedelta = timedelta(hours=1)) -> Outcome:
    outcome = None
    for spec_id, role, data in path:
        ready = only_ready(run)
        assert ready.spec_id == spec_id
        outcome = run.complete(ready.task_id, data, at=at, role=role)
        at += step
    return outcome


def start_and_review(engine, definition, review, *, reviewed_at):
    """Start, register at T0 + 1h and review at ``reviewed_at``."""
    run, outcome = engine.start(definition, {}, at=T0)
    run.complete(outcome.ready[0].task_id, REGISTER, at=T0 + timedelta(hours=1), role="grid_member")
    outcome = run.complete(only_ready(run).task_id, review, at=reviewed_at, role="community_staff")
    return run, outcome


@pytest.fixture
def started(engine, grid_quick):
    return engine.start(grid_quick, {}, at=T0)


# --- start ----------------------------------------------------------------------

def test_start_makes_register_ready(engine, grid_quick):
    run, outcome = engine.start(grid_quick, {"source": "hotline"}, at=T0)

    assert isinstance(run, CaseRun) and isinstance(outcome, Outcome)
    register = only_ready(outcome)
    assert register.spec_id == "register"
    assert register.name == "登记核实"
    assert register.role == "grid_member"
    assert register.lane == "网格员"
    assert register.form == "register.form.json"
    assert register.instructions and "核实" in register.instructions
    assert register.due_at is None and register.warn_at is None
    assert register.process_id == "grid_quick"
    assert register.task_id == task_id(run, "register")

    assert "start_reported" in spec_ids(outcome.completed)
    start_step = next(s for s in outcome.completed if s.spec_id == "start_reported")
    assert start_step == CompletedStep(start_step.task_id, "start_reported", "事件上报", "StartEvent")
    assert "register" not in spec_ids(outcome.completed)
    assert outcome.newly_ready == (register.task_id,)
    assert outcome.no_longer_ready == ()
    assert outcome.ended is False and run.ended is False
    assert outcome.end_events == ()
    assert outcome.timers == ()
    assert dict(outcome.data) == {"source": "hotline"}
    assert run.ready_tasks() == outcome.ready
    assert run.data == {"source": "hotline"}


@pytest.mark.parametrize("key", ["now", "parse_datetime", "len", "_private", "__builtins__", "not-a-name"])
def test_start_refuses_data_keys_that_scripts_cannot_have(engine, grid_quick, key):
    with pytest.raises(FormInvalid) as caught:
        engine.start(grid_quick, {key: 1, "fine": 2}, at=T0)
    assert list(caught.value.fields) == [key]


# --- both branches to the end ----------------------------------------------------

@pytest.mark.parametrize("path", [SELF_PATH, DISPATCH_PATH], ids=["self", "dispatch"])
def test_complete_drives_a_branch_to_the_end(engine, grid_quick, path):
    run, outcome = engine.start(grid_quick, {"source": "hotline"}, at=T0)
    expected_data = {"source": "hotline"}
    at = T0
    user_tasks_done = 0
    previous = only_ready(outcome)

    for index, (spec_id, role, data) in enumerate(path):
        ready = only_ready(run)
        assert ready.spec_id == spec_id and ready.role == role
        assert ready == previous  # what the last outcome announced is what is ready now
        at += timedelta(hours=3)
        outcome = run.complete(ready.task_id, data, at=at, role=role)
        user_tasks_done += 1
        expected_data.update(data)

        assert outcome.completed[0] == CompletedStep(ready.task_id, spec_id, ready.name, "UserTask")
        assert outcome.no_longer_ready == (ready.task_id,)
        assert dict(outcome.data) == expected_data
        assert run.data == expected_data
        if index < len(path) - 1:
            following = only_ready(outcome)
            assert following.spec_id == path[index + 1][0]
            assert outcome.newly_ready == (following.task_id,)
            assert outcome.ended is False and outcome.end_events == ()
            previous = following
        else:
            assert outcome.ready == () and outcome.newly_ready == ()
            assert outcome.ended is True and run.ended is True
            assert outcome.end_events == ("end_closed",)
            assert "end_closed" in spec_ids(outcome.completed)
            assert outcome.timers == ()
        if spec_id == "review":
            gateway = next(s for s in outcome.completed if s.spec_id == "gw_decision")
            assert gateway.kind == "ExclusiveGateway"

    assert user_tasks_done == 5
    # The branch not taken never ran, and the warning never fired.
    other = "department_handle" if path is SELF_PATH else "community_handle"
    assert all(t.state != TaskState.COMPLETED for t in run.workflow.get_tasks(spec_name=other))
    assert "warned" not in run.data


def test_handled_branch_cancels_its_timer(engine, grid_quick):
    run, outcome = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=T0 + timedelta(hours=2))
    assert [t.spec_id for t in outcome.timers] == ["timer_overdue"]
    outcome = run.complete(only_ready(run).task_id, HANDLE, at=T0 + timedelta(days=1), role="department_staff")
    assert outcome.timers == () and run.waiting_timers() == ()
    assert only_ready(outcome).spec_id == "reinspect"
    # Even long after the deadline, nothing fires any more.
    assert run.fire_timers(at=T0 + timedelta(days=30)).completed == ()


# --- refusals ----------------------------------------------------------------------

def assert_refused(engine, run, error, call):
    before = state(engine, run)
    ready_before = run.ready_tasks()
    with pytest.raises(error) as caught:
        call()
    assert state(engine, run) == before
    assert run.ready_tasks() == ready_before
    return caught.value


# Fixed values: parameter ids must be the same in every pytest-xdist worker.
@pytest.mark.parametrize("bad_id", ["6f1c2a9e-3b7d-4e0a-9c55-2d8e4b1a7f30", str(uuid.UUID(int=0)), "register", "", "not-a-uuid", "123"])
def test_unknown_task_id_is_refused(engine, started, bad_id):
    run, _ = started
    error = assert_refused(engine, run, TaskNotFound, lambda: run.complete(bad_id, REGISTER, at=T0))
    assert error.task_id == bad_id
    assert error.code == "task_not_found"


def test_future_task_is_refused_and_nothing_is_skipped(engine, started):
    # SpiffWorkflow's task.run() would complete a FUTURE task and skip register.
    run, _ = started
    review = task_id(run, "review")
    assert task_state(run, "review") == "FUTURE"
    error = assert_refused(engine, run, TaskNotReady,
                           lambda: run.complete(review, REVIEW_SELF, at=T0, role="community_staff"))
    assert error.task_id == review and error.state == "FUTURE"
    assert task_state(run, "review") == "FUTURE"
    assert task_state(run, "register") == "READY"


def test_maybe_task_on_an_untaken_branch_is_refused(engine, started):
    run, _ = started
    department = task_id(run, "department_handle")
    assert task_state(run, "department_handle") == "MAYBE"
    error = assert_refused(engine, run, TaskNotReady, lambda: run.complete(department, HANDLE, at=T0))
    assert error.state == "MAYBE"


def test_completed_task_is_refused(engine, started):
    run, outcome = started
    register = outcome.ready[0].task_id
    run.complete(register, REGISTER, at=T0, role="grid_member")
    error = assert_refused(engine, run, TaskNotReady,
                           lambda: run.complete(register, REGISTER, at=T0, role="grid_member"))
    assert error.state == "COMPLETED"
    assert only_ready(run).spec_id == "review"


def test_non_manual_tasks_are_refused(engine, grid_quick):
    run, _ = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=T0 + timedelta(hours=2))
    timer = task_id(run, "timer_overdue")
    error = assert_refused(engine, run, TaskNotReady, lambda: run.complete(timer, {}, at=T0))
    assert error.state == "WAITING"
    gateway = task_id(run, "gw_decision")
    error = assert_refused(engine, run, TaskNotReady, lambda: run.complete(gateway, {}, at=T0))
    assert error.state == "COMPLETED"


def test_cancelled_task_is_refused(engine, grid_quick):
    reviewed = T0 + timedelta(hours=2)
    run, outcome = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=reviewed)
    department = only_ready(outcome).task_id
    run.fire_timers(at=reviewed + timedelta(days=6))
    error = assert_refused(engine, run, TaskNotReady,
                           lambda: run.complete(department, HANDLE, at=reviewed + timedelta(days=6)))
    assert error.state == "CANCELLED"


@pytest.mark.parametrize("acting", ["community_staff", "duty_chief", "网格员", "nobody"])
def test_wrong_role_is_refused(engine, started, acting):
    run, outcome = started
    register = outcome.ready[0].task_id
    error = assert_refused(engine, run, WrongRole,
                           lambda: run.complete(register, REGISTER, at=T0, role=acting))
    assert (error.task_id, error.lane_role, error.acting_role) == (register, "grid_member", acting)
    # The right role (or no role check at all) goes through.
    assert run.complete(register, REGISTER, at=T0, role="grid_member").ended is False


@pytest.mark.parametrize(
    "data, fields",
    [
        pytest.param({k: v for k, v in REGISTER.items() if k != "location"},
                     {"location": ["This field is required."]}, id="missing-required"),
        pytest.param({**REGISTER, "verified": "yes"}, {"verified": ["Must be true or false."]}, id="wrong-type"),
        pytest.param({**REGISTER, "category": "fire"}, {"category": None}, id="not-in-enum"),
        pytest.param({**REGISTER, "description": "脏"}, {"description": None}, id="too-short"),
        pytest.param({**REGISTER, "colour": "red"},
                     {"_form": ['Unknown field "colour": this form does not declare it.']}, id="unknown-key"),
        pytest.param({**REGISTER, "now": "2026-01-01"}, {"now": ["'now' is reserved for a script helper"]},
                     id="helper-name"),
        pytest.param({**REGISTER, "timedelta": 1}, {"timedelta": None}, id="helper-timedelta"),
        pytest.param({**REGISTER, "_secret": 1}, {"_secret": None}, id="underscore"),
        pytest.param({**REGISTER, "__class__": 1}, {"__class__": None}, id="dunder"),
        pytest.param({}, {"category": None, "description": None, "location": None, "verified": None}, id="empty"),
    ],
)
def test_invalid_form_data_is_refused(engine, started, data, fields):
    run, outcome = started
    register = outcome.ready[0].task_id
    error = assert_refused(engine, run, FormInvalid,
                           lambda: run.complete(register, data, at=T0, role="grid_member"))
    assert error.code == "form_invalid"
    assert set(error.fields) == set(fields)
    for key, messages in fields.items():
        assert error.fields[key], key
        if messages is not None:
            assert error.fields[key] == messages


def test_form_data_must_be_an_object(engine, started):
    run, outcome = started
    error = assert_refused(engine, run, FormInvalid,
                           lambda: run.complete(outcome.ready[0].task_id, [("category", "garbage")], at=T0))
    assert list(error.fields) == ["_form"]


@pytest.mark.parametrize("key", ["now", "len", "timedelta", "add_duration", "_x", "__builtins__", "a b"])
def test_task_without_form_still_refuses_reserved_keys(engine, fixtures, key):
    run, _ = engine.start(fixtures["message_wait"], {}, at=T0)
    run.deliver_message("district_reply", {"answer": "同意"}, at=T0)
    read = only_ready(run)
    assert read.form is None
    error = assert_refused(engine, run, FormInvalid, lambda: run.complete(read.task_id, {key: 1}, at=T0))
    assert list(error.fields) == [key]
    # Any ordinary key is fine on a task without a form.
    outcome = run.complete(read.task_id, {"remark": "已阅"}, at=T0, role="grid_member")
    assert outcome.ended and outcome.data["remark"] == "已阅"


def test_naive_time_is_refused_without_change(engine, started):
    run, outcome = started
    assert_refused(engine, run, ValueError,
                   lambda: run.complete(outcome.ready[0].task_id, REGISTER, at=datetime(2026, 3, 2, 9, 0)))
    assert_refused(engine, run, ValueError, lambda: run.fire_timers(at=datetime(2026, 3, 9)))


def test_every_refusal_is_an_engine_error():
    for error in (TaskNotFound, TaskNotReady, WrongRole, FormInvalid, MessageNotAwaited, ProcessFailed):
        assert issubclass(error, EngineError)


# --- due information ----------------------------------------------------------------

def test_deadline_of_department_handle_is_review_time_plus_five_days(engine, grid_quick):
    reviewed = T0 + timedelta(hours=2, minutes=17, seconds=5)
    run, outcome = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=reviewed)

    department = only_ready(outcome)
    assert department.spec_id == "department_handle" and department.role == "department_staff"
    assert department.due_at == reviewed + timedelta(days=5)
    assert department.due_at.utcoffset() == timedelta(0)  # reported in UTC
    assert department.warn_at is None

    timers = run.waiting_timers()
    assert timers == outcome.timers
    assert timers == (
        WaitingTimer(
            task_id=task_id(run, "timer_overdue"),
            spec_id="timer_overdue",
            name="处置超时",
            due_at=reviewed + timedelta(days=5),
            interrupting=True,
            attached_to=department.task_id,
        ),
    )


def test_warning_of_community_handle_is_review_time_plus_one_day(engine, grid_quick):
    reviewed = T0 + timedelta(hours=5)
    run, outcome = start_and_review(engine, grid_quick, REVIEW_SELF, reviewed_at=reviewed)

    community = only_ready(outcome)
    assert community.spec_id == "community_handle" and community.role == "community_staff"
    assert community.warn_at == reviewed + timedelta(days=1)
    assert community.due_at is None
    (timer,) = run.waiting_timers()
    assert timer.spec_id == "timer_warning" and timer.name == "临期预警"
    assert timer.interrupting is False
    assert timer.attached_to == community.task_id
    assert timer.due_at == reviewed + timedelta(days=1)


def test_timer_on_a_parallel_branch_is_not_a_deadline(engine, fixtures):
    run, outcome = engine.start(fixtures["parallel_timer"], {}, at=T0)
    patrol = only_ready(outcome)
    assert patrol.spec_id == "patrol"
    assert [t.spec_id for t in outcome.timers] == ["one_day"]
    assert outcome.timers[0].attached_to is None
    assert patrol.due_at is None and patrol.warn_at is None


# --- firing timers --------------------------------------------------------------------

def test_interrupting_timer_escalates_to_supervise(engine, grid_quick):
    reviewed = T0 + timedelta(hours=2)
    run, outcome = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=reviewed)
    department = only_ready(outcome)

    before = state(engine, run)
    early = run.fire_timers(at=reviewed + timedelta(days=5) - timedelta(seconds=1))
    assert early.completed == () and early.newly_ready == () and early.no_longer_ready == ()
    assert early.ready == (department,)
    assert state(engine, run) == before

    fired = run.fire_timers(at=reviewed + timedelta(days=6))
    supervise = only_ready(fired)
    assert supervise.spec_id == "supervise" and supervise.role == "supervisor"
    assert supervise.form == "supervise.form.json"
    assert fired.newly_ready == (supervise.task_id,)
    assert fired.no_longer_ready == (department.task_id,)
    timer_step = next(s for s in fired.completed if s.spec_id == "timer_overdue")
    assert timer_step.kind == "BoundaryEvent" and timer_step.task_id == task_id(run, "timer_overdue")
    assert "department_handle" not in spec_ids(fired.completed)
    assert task_state(run, "department_handle") == "CANCELLED"
    assert fired.timers == () and fired.ended is False and fired.end_events == ()

    after = state(engine, run)
    again = run.fire_timers(at=reviewed + timedelta(days=7))
    assert again.completed == () and again.newly_ready == () and again.no_longer_ready == ()
    assert again.ready == (supervise,)
    assert state(engine, run) == after

    at = reviewed + timedelta(days=7)
    end = drive(run, [("supervise", "supervisor", SUPERVISE), ("reinspect", "grid_member", REINSPECT),
                      ("close", "duty_chief", CLOSE)], at)
    assert end.ended and end.end_events == ("end_closed",)
    assert end.data["instruction"] == SUPERVISE["instruction"]


def test_timer_fires_strictly_after_its_due_time(engine, grid_quick):
    """SpiffWorkflow's rule (due < now), which app.cases.service follows when it selects due timers."""
    reviewed = T0 + timedelta(hours=2)
    run, _ = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=reviewed)
    (timer,) = run.waiting_timers()
    assert run.fire_timers(at=timer.due_at).completed == ()
    fired = run.fire_timers(at=timer.due_at + timedelta(microseconds=1))
    assert timer.task_id in [s.task_id for s in fired.completed]


def test_non_interrupting_warning_keeps_the_task(engine, grid_quick):
    reviewed = T0 + timedelta(hours=2)
    run, outcome = start_and_review(engine, grid_quick, REVIEW_SELF, reviewed_at=reviewed)
    community = only_ready(outcome)

    assert run.fire_timers(at=reviewed + timedelta(hours=23)).completed == ()
    fired = run.fire_timers(at=reviewed + timedelta(days=2))
    assert spec_ids(fired.completed) == ["timer_warning", "mark_warning", "end_warning"]
    assert fired.completed[1].kind == "ScriptTask"
    assert fired.end_events == ("end_warning",)
    assert fired.ended is False
    assert only_ready(fired).task_id == community.task_id  # still ready, same task
    assert fired.newly_ready == () and fired.no_longer_ready == ()
    assert fired.timers == ()
    # The warning has fired but still dates the yellow light (80% of the limit passed).
    assert only_ready(fired).warn_at == reviewed + timedelta(days=1)

    assert run.fire_timers(at=reviewed + timedelta(days=3)).completed == ()
    end = drive(run, SELF_PATH[2:], reviewed + timedelta(days=3))
    assert end.ended and end.end_events == ("end_closed",)
    assert end.data["warned"] is True  # the warning branch's data joins at the end


def test_warning_data_is_visible_while_the_case_runs(engine, grid_quick):
    reviewed = T0 + timedelta(hours=2)
    run, _ = start_and_review(engine, grid_quick, REVIEW_SELF, reviewed_at=reviewed)
    fired = run.fire_timers(at=reviewed + timedelta(days=2))
    assert only_ready(fired).spec_id == "community_handle"
    assert fired.data.get("warned") is True
    assert run.data.get("warned") is True


# --- the case clock --------------------------------------------------------------------

@pytest.mark.parametrize("year", [2001, 2045])
def test_timers_follow_the_case_clock_not_the_wall_clock(engine, grid_quick, year):
    t0 = datetime(year, 6, 1, 8, 0, tzinfo=CST)
    run, _ = engine.start(grid_quick, {}, at=t0)
    run.complete(only_ready(run).task_id, REGISTER, at=t0, role="grid_member")
    outcome = run.complete(only_ready(run).task_id, REVIEW_DISPATCH, at=t0 + timedelta(hours=1))
    assert only_ready(outcome).due_at == t0 + timedelta(hours=1, days=5)

    # In 2001 the wall clock is long past the deadline, in 2045 long before it:
    # only the case clock decides.
    assert run.fire_timers(at=t0 + timedelta(days=5)).completed == ()
    fired = run.fire_timers(at=t0 + timedelta(days=5, hours=2))
    assert only_ready(fired).spec_id == "supervise"


def test_scripts_read_the_case_clock(engine, fixtures):
    t0 = datetime(2031, 1, 15, 10, 30, tzinfo=CST)
    run, outcome = engine.start(fixtures["clock_script"], {}, at=t0)
    assert outcome.data["started_at"] == t0.astimezone(timezone.utc).isoformat()
    assert outcome.data["due_at"] == (t0 + timedelta(hours=4)).astimezone(timezone.utc).isoformat()

    confirmed = t0 + timedelta(minutes=45)
    outcome = run.complete(only_ready(outcome).task_id, {}, at=confirmed, role="grid_member")
    assert outcome.data["confirmed_at"] == confirmed.astimezone(timezone.utc).isoformat()
    (timer,) = outcome.timers
    assert timer.spec_id == "wait_deadline" and timer.attached_to is None
    assert timer.due_at == t0 + timedelta(hours=4)

    assert run.fire_timers(at=t0 + timedelta(hours=3, minutes=59)).completed == ()
    fired = run.fire_timers(at=t0 + timedelta(hours=4, seconds=1))
    assert spec_ids(fired.completed) == ["wait_deadline"]
    assert only_ready(fired).spec_id == "after_deadline"


def test_the_same_instant_in_any_offset_gives_the_same_result(engine, grid_quick):
    utc_at = T0.astimezone(timezone.utc)
    a, _ = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=T0)
    b, _ = start_and_review(engine, grid_quick, REVIEW_DISPATCH, reviewed_at=utc_at)
    assert only_ready(a).due_at == only_ready(b).due_at == T0 + timedelta(days=5)


def test_the_case_clock_does_not_leak(engine, fixtures):
    engine.start(fixtures["clock_script"], {}, at=datetime(2001, 1, 1, tzinfo=timezone.utc))
    assert abs(clock.current_time() - datetime.now(timezone.utc)) < timedelta(minutes=1)


# --- messages ----------------------------------------------------------------------

def test_message_to_a_case_that_waits_for_none_is_refused(engine, started):
    run, _ = started
    error = assert_refused(engine, run, MessageNotAwaited,
                           lambda: run.deliver_message("district_reply", {"answer": "同意"}, at=T0))
    assert error.name == "district_reply" and error.code == "message_not_awaited"


def test_message_moves_the_case_on_and_lands_in_data(engine, fixtures):
    run, outcome = engine.start(fixtures["message_wait"], {"ticket": "A-1"}, at=T0)
    assert outcome.ready == () and outcome.ended is False
    assert task_state(run, "wait_reply") == "WAITING"
    assert outcome.timers == ()  # a message wait is not a timer

    error = assert_refused(engine, run, MessageNotAwaited,
                           lambda: run.deliver_message("county_reply", {"answer": "同意"}, at=T0))
    assert error.name == "county_reply"

    payload = {"answer": "同意", "officer": "王科长"}
    delivered = run.deliver_message("district_reply", payload, at=T0 + timedelta(hours=3))
    assert spec_ids(delivered.completed) == ["wait_reply"]
    assert delivered.completed[0].kind == "IntermediateCatchEvent"
    read = only_ready(delivered)
    assert read.spec_id == "read_reply" and read.role == "grid_member" and read.lane == "网格员"
    assert delivered.newly_ready == (read.task_id,)
    # SpiffWorkflow 3.2 stores the payload under the catch event's spiffworkflow:messageVariable.
    assert dict(delivered.data) == {"ticket": "A-1", "reply": payload}

    assert_refused(engine, run, MessageNotAwaited,
                   lambda: run.deliver_message("district_reply", payload, at=T0 + timedelta(hours=4)))
    end = run.complete(read.task_id, {}, at=T0 + timedelta(hours=5), role="grid_member")
    assert end.ended and end.end_events == ("end",)
    assert end.data["reply"] == payload


def test_message_to_an_ended_case_is_refused(engine, fixtures):
    run, _ = engine.start(fixtures["message_wait"], {}, at=T0)
    run.deliver_message("district_reply", {}, at=T0)
    run.complete(only_ready(run).task_id, {}, at=T0)
    assert run.ended
    assert_refused(engine, run, MessageNotAwaited, lambda: run.deliver_message("district_reply", {}, at=T0))


# --- process failures ------------------------------------------------------------------

def test_gateway_without_a_matching_branch_fails_the_process(engine, fixtures):
    run, outcome = engine.start(fixtures["no_branch"], {}, at=T0)
    assess = only_ready(outcome)
    with pytest.raises(ProcessFailed) as caught:
        run.complete(assess.task_id, {"level": "medium"}, at=T0, role="grid_member")
    assert "gw_level" in str(caught.value)
    assert caught.value.code == "process_failed"


def test_gateway_with_a_matching_branch_goes_on(engine, fixtures):
    run, outcome = engine.start(fixtures["no_branch"], {}, at=T0)
    outcome = run.complete(only_ready(outcome).task_id, {"level": "high"}, at=T0, role="grid_member")
    assert only_ready(outcome).spec_id == "handle_high"
