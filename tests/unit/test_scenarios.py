"""Scenario runner and branch coverage (workflows/scenarios.py, workflows/coverage.py)."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from SpiffWorkflow.util.task import TaskState

from workflows.coverage import CoverageCollector, coverable_items, coverage_report, task_hits
from workflows.definitions import load_folder
from workflows.engine import Engine
from workflows.roles import RoleCatalogue
from workflows.scenarios import (
    ScenarioFormatError,
    _matches,
    discover,
    load_scenario,
    parse_scenario,
    run_scenario,
    run_suite,
)

ROOT = Path(__file__).resolve().parents[2]
GRID_QUICK = ROOT / "bpmn" / "grid_quick"
SCENARIOS = GRID_QUICK / "scenarios"
ROLES = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")
CST = timezone(timedelta(hours=8))

REGISTER = {"category": "garbage", "description": "小区东门垃圾堆放三天未清运", "location": "一网格3栋东侧", "verified": True}

# A dispatch walk through grid_quick that passes; tests break one thing at a time.
DISPATCH = {
    "name": "派发后按期处置",
    "process": "grid_quick",
    "start": {"at": "2026-03-02T09:00:00+08:00"},
    "steps": [
        {"complete": "register", "role": "grid_member", "data": REGISTER},
        {"complete": "review", "data": {"decision": "dispatch", "opinion": "派城管"},
         "expect": {"ready": ["department_handle"], "timers": ["timer_overdue"]}},
        {"complete": "department_handle", "role": "department_staff", "after": "P2D", "data": {"result": "已处置"}},
        {"complete": "reinspect", "data": {"passed": True}},
        {"complete": "close", "data": {"summary": "办结", "satisfaction": "satisfied"}},
    ],
    "expect": {"ended": True, "end_event": "end_closed", "data": {"decision": "dispatch", "passed": True}},
}

# Probe: an embedded subprocess (exclusive gateway inside) guarded by an interrupting timer
# whose path leads to another timer-guarded task; an inclusive gateway; a message catch.
PROBE_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs_probe" targetNamespace="http://gridcase.example/test">
  <bpmn:message id="msg_reply" name="reply" />
  <bpmn:process id="probe" name="覆盖探针" isExecutable="true">
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_member" name="网格员">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>sub_choose</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>timer_sub</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>stamp_timeout</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>gw_notify</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>task_a</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>wait_reply</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_a</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>task_b</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>timer_b</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>stamp_b</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_b_late</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_b</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_none</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f_start" sourceRef="start" targetRef="sub_choose" />
    <bpmn:subProcess id="sub_choose" name="选择处置">
      <bpmn:startEvent id="sub_start" />
      <bpmn:sequenceFlow id="f_sub_start" sourceRef="sub_start" targetRef="gw_pick" />
      <bpmn:exclusiveGateway id="gw_pick" name="选哪个" default="f_pick_y" />
      <bpmn:sequenceFlow id="f_pick_x" name="选X" sourceRef="gw_pick" targetRef="x_task">
        <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">pick == "x"</bpmn:conditionExpression>
      </bpmn:sequenceFlow>
      <bpmn:sequenceFlow id="f_pick_y" sourceRef="gw_pick" targetRef="y_task" />
      <bpmn:userTask id="x_task" name="做X" />
      <bpmn:sequenceFlow id="f_x_end" sourceRef="x_task" targetRef="sub_end_x" />
      <bpmn:endEvent id="sub_end_x" name="X完成" />
      <bpmn:userTask id="y_task" name="做Y" />
      <bpmn:sequenceFlow id="f_y_end" sourceRef="y_task" targetRef="sub_end_y" />
      <bpmn:endEvent id="sub_end_y" />
    </bpmn:subProcess>
    <bpmn:boundaryEvent id="timer_sub" name="子流程超时" attachedToRef="sub_choose">
      <bpmn:timerEventDefinition id="td_sub"><bpmn:timeDuration>"PT1H"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f_timeout" sourceRef="timer_sub" targetRef="stamp_timeout" />
    <bpmn:scriptTask id="stamp_timeout" name="记录超时" scriptFormat="python">
      <bpmn:script>timed_out_at = isoformat(now())</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f_timeout_b" sourceRef="stamp_timeout" targetRef="task_b" />
    <bpmn:sequenceFlow id="f_sub_done" sourceRef="sub_choose" targetRef="gw_notify" />
    <bpmn:inclusiveGateway id="gw_notify" name="通知" default="f_none" />
    <bpmn:sequenceFlow id="f_a" name="通知A" sourceRef="gw_notify" targetRef="task_a">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">notify_a</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_b" sourceRef="gw_notify" targetRef="task_b">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">notify_b</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_none" sourceRef="gw_notify" targetRef="end_none" />
    <bpmn:endEvent id="end_none" name="无需通知" />
    <bpmn:userTask id="task_a" name="通知A" />
    <bpmn:sequenceFlow id="f_a_wait" sourceRef="task_a" targetRef="wait_reply" />
    <bpmn:intermediateCatchEvent id="wait_reply" name="等回复">
      <bpmn:messageEventDefinition id="med_reply" messageRef="msg_reply" />
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f_a_end" sourceRef="wait_reply" targetRef="end_a" />
    <bpmn:endEvent id="end_a" name="A完成" />
    <bpmn:userTask id="task_b" name="通知B" />
    <bpmn:boundaryEvent id="timer_b" name="B超时" attachedToRef="task_b">
      <bpmn:timerEventDefinition id="td_b"><bpmn:timeDuration>"PT2H"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f_b_late" sourceRef="timer_b" targetRef="stamp_b" />
    <bpmn:scriptTask id="stamp_b" name="记录B超时" scriptFormat="python">
      <bpmn:script>b_late_at = isoformat(now())</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f_b_late_end" sourceRef="stamp_b" targetRef="end_b_late" />
    <bpmn:endEvent id="end_b_late" name="B超时结束" />
    <bpmn:sequenceFlow id="f_b_end" sourceRef="task_b" targetRef="end_b" />
    <bpmn:endEvent id="end_b" name="B完成" />
  </bpmn:process>
</bpmn:definitions>
"""

PROBE_TIMEOUT = {
    "name": "子流程超时，B也超时", "process": "probe",
    "start": {"at": "2026-03-02T09:00:00+08:00", "data": {"pick": "x"}},
    "steps": [
        {"expect": {"ready": ["x_task"], "timers": ["timer_sub"]}},
        {"advance": "P1D"},
    ],
    "expect": {"ended": True, "end_event": "end_b_late"},
}
PROBE_BOTH = {
    "name": "Y，通知A和B", "process": "probe",
    "start": {"at": "2026-03-02T09:00:00+08:00", "data": {"pick": "y", "notify_a": True, "notify_b": True}},
    "steps": [
        {"complete": "y_task", "data": {"y": 1},
         "expect": {"ready": ["task_b", "task_a"], "timers": ["timer_b"], "end_event": None}},
        {"complete": "task_a"},
        {"message": "reply", "payload": {"ok": True},
         "expect": {"ready": ["task_b"], "end_event": "end_a", "ended": False}},
        {"complete": "task_b"},
    ],
    "expect": {"ended": True, "end_event": "end_b", "ready": [], "timers": []},
}
PROBE_NONE = {
    "name": "Y，无需通知", "process": "probe",
    "start": {"at": "2026-03-02T09:00:00+08:00", "data": {"pick": "y", "notify_a": False, "notify_b": False}},
    "steps": [{"complete": "y_task"}],
    "expect": {"ended": True, "end_event": "end_none"},
}


@pytest.fixture(scope="module")
def engine():
    return Engine(ROLES)


@pytest.fixture(scope="module")
def grid_quick():
    result = load_folder(GRID_QUICK, ROLES)
    assert not result.issues, result.issues
    return result.definitions[0]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.bpmn").write_text(PROBE_BPMN, encoding="utf-8")
    result = load_folder(folder, ROLES)
    assert not result.issues, result.issues
    return result.definitions[0]


def variant(base=DISPATCH, **changes):
    document = copy.deepcopy(base)
    document.update(changes)
    return document


def run(document, definition, engine):
    return run_scenario(parse_scenario(document, "t.json"), definition, engine)


def format_error(document) -> ScenarioFormatError:
    with pytest.raises(ScenarioFormatError) as info:
        parse_scenario(document, "bpmn/x/scenarios/bad.json")
    return info.value


# --- the format --------------------------------------------------------------------

def test_shipped_grid_quick_scenarios_load():
    files = discover(GRID_QUICK)
    assert [f.name for f in files] == ["dispatch_in_time.json", "dispatch_overdue.json", "self_handle.json",
                                       "self_warning.json"]
    scenarios = [load_scenario(f) for f in files]
    assert {s.process for s in scenarios} == {"grid_quick"}
    warning = scenarios[3]
    assert warning.start_at == datetime(2026, 3, 2, 9, tzinfo=CST)
    assert [s.kind for s in warning.steps] == ["complete", "complete", "advance", "complete", "complete", "complete"]
    assert warning.steps[2].advance_by == timedelta(days=1) and warning.steps[2].expect["data"] == {"warned": True}


def test_discover_finds_scenario_folders_only(tmp_path):
    (tmp_path / "a" / "scenarios").mkdir(parents=True)
    (tmp_path / "a" / "scenarios" / "one.json").write_text("{}")
    (tmp_path / "a" / "scenarios" / "notes.txt").write_text("")
    (tmp_path / "a" / "other.json").write_text("{}")
    (tmp_path / ".hidden" / "scenarios").mkdir(parents=True)
    (tmp_path / ".hidden" / "scenarios" / "x.json").write_text("{}")
    assert discover(tmp_path) == [tmp_path / "a" / "scenarios" / "one.json"]
    assert discover(tmp_path / "a" / "scenarios") == [tmp_path / "a" / "scenarios" / "one.json"]


def test_invalid_json_names_the_file_and_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "steps": [}', encoding="utf-8")
    with pytest.raises(ScenarioFormatError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: line 2 column 12: not valid JSON: Expecting value"


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"process": "a", "process": "b"}', encoding="utf-8")
    with pytest.raises(ScenarioFormatError, match="duplicate key 'process'"):
        load_scenario(path)


def test_a_scenario_is_an_object():
    assert str(format_error([1, 2])) == "bpmn/x/scenarios/bad.json: a scenario is a JSON object, not a list"


def test_missing_and_naive_start():
    error = format_error({"process": "grid_quick", "start": {"at": "2026-03-02T09:00:00"}})
    assert error.problems == (("start.at", "datetime 2026-03-02T09:00:00 has no timezone (add e.g. 'Z' or '+08:00')"),)
    error = format_error({"start": {"data": []}})
    assert [w for w, _ in error.problems] == ["process", "start.at", "start.data"]


def test_step_problems_name_the_step_index_and_suggest_fixes():
    document = variant()
    document["steps"][2]["complet"] = document["steps"][2].pop("complete")
    document["steps"][0]["afer"] = "PT1H"
    document["steps"][3]["after"] = "PT1D"
    document["steps"][4]["at"] = "2026-03-05T10:00:00+08:00"
    document["steps"][4]["after"] = "PT1H"
    error = format_error(document)
    assert error.problems == (
        ("steps[0].afer", "unknown key in a complete step (did you mean 'after'?) "
                          "(allowed: complete, data, role, after, at, expect)"),
        ("steps[2]", "a step needs one of: complete, advance, message, expect; unknown keys: "
                     "'complet' (did you mean 'complete'?)"),
        ("steps[3].after", "not an ISO 8601 duration: 'PT1D' (examples: 'PT4H', 'P2D', 'P1DT2H')"),
        ("steps[4]", "give either after or at, not both"),
    )
    assert str(error).startswith("bpmn/x/scenarios/bad.json: steps[0].afer: unknown key")


def test_more_step_shapes():
    steps = [
        "register",
        {"complete": "a", "advance": "P1D"},
        {"advance": 3},
        {"advance": "P1D", "after": "PT1H"},
        {"expect": {}},
        {"expect": {"redy": ["a"]}},
        {"expect": {"ready": "register", "ended": "yes", "data": [], "end_event": 3}},
        {"message": "", "payload": []},
        {"complete": "register", "data": {"x": 1}, "description": "说明", "_note": "comments are fine"},
    ]
    error = format_error(variant(steps=steps))
    assert error.problems == (
        ("steps[0]", "a step is an object, not a string"),
        ("steps[1]", "one action per step, found complete and advance"),
        ("steps[2].advance", 'must be an ISO duration ("P3D") or an aware ISO datetime'),
        ("steps[3].after", "unknown key in an advance step (allowed: advance, expect)"),
        ("steps[4].expect", "names nothing to check (known: ready, data, ended, end_event, timers)"),
        ("steps[5].expect.redy", "unknown expectation (did you mean 'ready'?) (known: ready, data, ended, end_event, timers)"),
        ("steps[6].expect.ready", "must be a list of BPMN ids"),
        ("steps[6].expect.data", "must be an object of key/values, not a list"),
        ("steps[6].expect.ended", "must be true or false"),
        ("steps[6].expect.end_event", "must be an end event's BPMN id (or null: none reached yet)"),
        ("steps[7].message", "must be a non-empty string (the message name)"),
        ("steps[7].payload", "must be an object, not a list"),
    )


def test_name_defaults_to_the_file_and_comments_are_allowed():
    document = variant(description="说明", _comment="x")
    del document["name"]
    scenario = parse_scenario(document, "bpmn/grid_quick/scenarios/walk.json")
    assert scenario.name == "walk"
    assert parse_scenario(variant(steps=[{"advance": "2026-03-03T09:00:00+08:00"}])).steps[0].advance_to == \
        datetime(2026, 3, 3, 9, tzinfo=CST)


def test_a_malformed_file_is_a_failed_result_not_a_traceback(tmp_path, engine, grid_quick):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "good.json").write_text(json.dumps(DISPATCH, ensure_ascii=False), encoding="utf-8")
    (folder / "bad.json").write_text(json.dumps(variant(steps=[{"complete": "register", "dta": {}}])), encoding="utf-8")
    report = run_suite(discover(folder), [grid_quick], engine)
    assert [r.passed for r in report.results] == [False, True]
    assert report.results[0].line() == (
        f"FAIL {folder / 'bad.json'}: not a valid scenario: steps[0].dta: unknown key in a complete step "
        "(did you mean 'data'?) (allowed: complete, data, role, after, at, expect)"
    )
    assert not report.passed


# --- running ------------------------------------------------------------------------

def test_a_passing_scenario(engine, grid_quick):
    result = run(DISPATCH, grid_quick, engine)
    assert result.passed, result.failure
    assert result.line() == "PASS grid_quick: 派发后按期处置 (t.json)"


def test_expect_mismatch_names_step_expected_actual_and_ready_tasks(engine, grid_quick):
    document = variant()
    document["steps"][1]["expect"] = {"ready": ["supervise"], "timers": []}
    result = run(document, grid_quick, engine)
    assert result.failure.step == 1
    assert result.failure.ready == ("department_handle",)
    assert str(result.failure) == (
        'steps[1] (complete review): ready: expected ["supervise"], got ["department_handle"]; '
        'timers: expected [], got ["timer_overdue"] (ready tasks: department_handle)'
    )
    assert result.line() == f"FAIL grid_quick: 派发后按期处置 (t.json): {result.failure}"


def test_final_expect_mismatch(engine, grid_quick):
    document = variant(expect={"ended": False, "end_event": "end_warning",
                               "data": {"decision": "self", "passed": True, "absent": 1}})
    failure = run(document, grid_quick, engine).failure
    assert (failure.where, failure.step) == ("final expect", None)
    assert failure.message == (
        'data.decision: expected "self", got "dispatch"; data.absent: expected 1, but the case data has no '
        "'absent'; ended: expected false, got true; end_event: expected \"end_warning\", got \"end_closed\""
    )
    assert failure.ready == ()


def test_completing_a_task_that_is_not_ready(engine, grid_quick):
    document = variant()
    document["steps"][2]["complete"] = "supervise"
    failure = run(document, grid_quick, engine).failure
    assert str(failure) == ("steps[2] (complete supervise): supervise is not a READY user task "
                            "(ready tasks: department_handle)")


def test_role_must_match_the_lane(engine, grid_quick):
    document = variant()
    document["steps"][2]["role"] = "grid_member"
    assert run(document, grid_quick, engine).failure.message == (
        "department_handle is done by role 'department_staff' (its lane), not 'grid_member'")
    document["steps"][2]["role"] = "mayor"
    assert run(document, grid_quick, engine).failure.message == "role 'mayor' is not in the role catalogue (roles.json)"


def test_form_data_is_validated(engine, grid_quick):
    document = variant()
    document["steps"][2]["data"] = {"reslt": "x"}
    failure = run(document, grid_quick, engine).failure
    assert failure.step == 2
    assert failure.message.startswith("form data rejected: ")
    assert '"reslt"' in failure.message and "result: " in failure.message


def test_a_step_after_a_due_timer_fails_and_says_to_advance(engine, grid_quick):
    document = variant()
    document["steps"][2]["after"] = "P6D"
    failure = run(document, grid_quick, engine).failure
    assert str(failure) == (
        "steps[2] (complete department_handle): this step happens at 2026-03-08T09:20:00+08:00, but timer "
        "timer_overdue (处置超时) was due at 2026-03-07T09:20:00+08:00: in the application it fires first. "
        'Add {"advance": "P5D"} before this step, or do this step earlier (ready tasks: department_handle)'
    )


def test_time_cannot_go_backwards(engine, grid_quick):
    document = variant()
    document["steps"][1]["at"] = "2026-03-02T08:00:00+08:00"
    assert run(document, grid_quick, engine).failure.message == (
        "at 2026-03-02T08:00:00+08:00 is earlier than the case clock 2026-03-02T09:10:00+08:00: "
        "time cannot go backwards")


def test_advance_fires_the_overdue_timer(engine, grid_quick):
    document = variant()
    document["steps"][2:] = [
        {"advance": "P5D", "expect": {"ready": ["supervise"], "timers": []}},
        {"complete": "supervise", "role": "supervisor", "data": {"instruction": "限期", "result": "已督促"}},
        {"complete": "reinspect", "data": {"passed": True}},
        {"complete": "close", "data": {"summary": "办结", "satisfaction": "satisfied"}},
    ]
    assert run(document, grid_quick, engine).passed
    # One second short of the due time: nothing fires yet.
    document["steps"][2] = {"advance": "P4DT23H59M59S", "expect": {"ready": ["department_handle"]}}
    document["steps"][3]["after"] = "PT0S"
    failure = run(document, grid_quick, engine).failure
    assert failure.step == 3 and failure.message == "supervise is not a READY user task"


def test_advance_fires_each_timer_at_its_own_due_time(engine, probe):
    # timer_sub (PT1H) fires at 10:00:01; the task it leads to starts timer_b (PT2H) then,
    # which fires at 12:00:02 within the same advance.
    document = variant(PROBE_TIMEOUT)
    document["expect"]["data"] = {"timed_out_at": "2026-03-02T02:00:01+00:00", "b_late_at": "2026-03-02T04:00:02+00:00"}
    result = run(document, probe, engine)
    assert result.passed, result.failure


def test_messages_and_subprocess_end_events(engine, probe):
    assert run(PROBE_BOTH, probe, engine).passed  # sub_end_y is no top-level end event: end_event stays null
    document = variant(PROBE_BOTH)
    document["steps"][2]["message"] = "other"
    assert str(run(document, probe, engine).failure) == (
        "steps[2] (message other): the case is not waiting for message 'other' (ready tasks: task_b)")


def test_a_scenario_for_an_unknown_process(tmp_path, engine, grid_quick):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(variant(process="nope")), encoding="utf-8")
    report = run_suite([path], {"grid_quick": grid_quick}, engine)
    assert report.results[0].failure.message == "no valid process 'nope' was loaded here (loaded: grid_quick)"
    assert report.coverage == ()


def test_value_matching():
    at = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
    assert _matches("2026-03-02T09:00:00+08:00", at)
    assert not _matches("2026-03-02T09:00:00", at)
    assert _matches(1.5, Decimal("1.5"))
    assert not _matches(1, True) and not _matches(True, 1) and _matches(True, True)
    assert _matches({"a": [1, "x"]}, {"a": (1, "x")})
    assert not _matches({"a": 1}, {"a": 1, "b": 2})


# --- coverage --------------------------------------------------------------------------

def test_coverable_items_of_grid_quick(grid_quick):
    items = coverable_items(grid_quick)
    assert [i.key for i in items] == [
        ("flow", "grid_quick", "gw_decision", "community_handle"),
        ("flow", "grid_quick", "gw_decision", "department_handle"),
        ("boundary", "grid_quick", "timer_overdue"),
        ("boundary", "grid_quick", "timer_warning"),
        ("end", "grid_quick", "end_closed"),
        ("end", "grid_quick", "end_warning"),
    ]  # gw_merge has a single outgoing flow: nothing to cover there
    assert items[1].label == ('处置方式 (gw_decision) → 部门处置 (department_handle) '
                              '[flow flow_dispatch “派发职能部门”, when decision == "dispatch"]')
    assert items[0].label.endswith("[flow flow_self “社区自行处置”, default]")
    assert items[3].label == "non-interrupting timer boundary event 临期预警 (timer_warning) on 社区处置 (community_handle)"


def test_the_self_scenario_alone_misses_the_dispatch_branch_and_the_timers(engine, grid_quick):
    report = run_suite([SCENARIOS / "self_handle.json"], [grid_quick], engine)
    assert report.passed
    coverage = report.coverage[0]
    assert (coverage.hit_count, coverage.total, coverage.percent, coverage.full) == (2, 6, 33, False)
    assert not report.full_coverage
    assert coverage.lines() == [
        "coverage grid_quick (网格事件快速处置): 2/6 branches, end and boundary events (33%)",
        '  missed: 处置方式 (gw_decision) → 部门处置 (department_handle) [flow flow_dispatch “派发职能部门”, '
        'when decision == "dispatch"]',
        "  missed: interrupting timer boundary event 处置超时 (timer_overdue) on 部门处置 (department_handle)",
        "  missed: non-interrupting timer boundary event 临期预警 (timer_warning) on 社区处置 (community_handle)",
        "  missed: end event 预警已记录 (end_warning)",
    ]


def test_the_shipped_scenarios_cover_grid_quick(engine, grid_quick):
    report = run_suite(discover(GRID_QUICK), [grid_quick], engine)
    assert report.passed, report.lines()
    assert report.full_coverage
    assert report.lines()[-2:] == [
        "coverage grid_quick (网格事件快速处置): 6/6 branches, end and boundary events (100%)",
        "4 scenario(s): 4 passed, 0 failed",
    ]


def _task(run, spec_id):
    return next(t for t in run.workflow.tasks.values() if t.task_spec.name == spec_id)


def test_gateway_rule_on_the_task_tree(engine, grid_quick):
    at = datetime(2026, 3, 2, 9, tzinfo=CST)
    run, _ = engine.start(grid_quick, {}, at=at)
    ready = {t.spec_id: t.task_id for t in run.ready_tasks()}
    run.complete(ready["register"], REGISTER, at=at + timedelta(minutes=10))
    gateway = _task(run, "gw_decision")
    # Not run yet: both branches are predicted children, neither is hit.
    assert gateway.state == TaskState.FUTURE
    assert {TaskState.get_name(c.state) for c in gateway.children} == {"LIKELY", "MAYBE"}
    assert task_hits(gateway) == set()

    ready = {t.spec_id: t.task_id for t in run.ready_tasks()}
    run.complete(ready["review"], {"decision": "dispatch", "opinion": "派"}, at=at + timedelta(minutes=20))
    assert gateway.state == TaskState.COMPLETED
    assert [c.task_spec.name for c in gateway.children] == ["department_handle.BoundaryEventSplit"]
    assert task_hits(gateway) == {("flow", "grid_quick", "gw_decision", "department_handle")}

    outcome = run.fire_timers(at=at + timedelta(days=6))
    assert _task(run, "department_handle").state == TaskState.CANCELLED
    collector = CoverageCollector()
    collector.observe(run.workflow, outcome.completed)
    assert collector.hits == {
        ("flow", "grid_quick", "gw_decision", "department_handle"),
        ("boundary", "grid_quick", "timer_overdue"),
    }


def test_a_taken_branch_that_is_later_cancelled_still_counts(engine, probe):
    at = datetime(2026, 3, 2, 9, tzinfo=CST)
    run, _ = engine.start(probe, {"pick": "x"}, at=at)
    run.fire_timers(at=at + timedelta(hours=2))
    tasks = {t.task_spec.name: t for sp in run.workflow.subprocesses.values() for t in sp.tasks.values()}
    assert tasks["gw_pick"].state == TaskState.COMPLETED
    assert [(c.task_spec.name, TaskState.get_name(c.state)) for c in tasks["gw_pick"].children] == [("x_task", "CANCELLED")]
    assert task_hits(tasks["gw_pick"]) == {("flow", "sub_choose", "gw_pick", "x_task")}


def test_coverage_across_subprocess_inclusive_gateway_and_message(tmp_path, engine, probe):
    files = []
    for name, document in (("timeout", PROBE_TIMEOUT), ("both", PROBE_BOTH), ("none", PROBE_NONE)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        files.append(path)
    report = run_suite(files, [probe], engine)
    assert report.passed, report.lines()
    coverage = report.coverage[0]
    assert len(coverage.items) == 13
    assert (coverage.hit_count, coverage.percent) == (12, 92)
    assert [i.label for i in coverage.missed] == ["in 选择处置 (sub_choose): end event X完成 (sub_end_x)"]
    assert ("flow", "probe", "gw_notify", "task_a") in coverage.hit and ("flow", "probe", "gw_notify", "task_b") in coverage.hit

    only_none = run_suite(files[2:], [probe], engine).coverage[0]
    assert {i.key for i in only_none.missed} >= {
        ("flow", "probe", "gw_notify", "task_a"), ("flow", "probe", "gw_notify", "task_b"),
        ("flow", "sub_choose", "gw_pick", "x_task"), ("boundary", "probe", "timer_sub"),
    }


def test_processes_without_scenarios_are_reported(engine, grid_quick, probe):
    report = run_suite([SCENARIOS / "self_handle.json"], [grid_quick, probe], engine)
    assert [d.process_id for d in report.untested] == ["probe"]
    assert "coverage probe (覆盖探针): no scenarios" in report.lines()
    assert not report.full_coverage


def test_report_with_nothing_to_cover(grid_quick):
    report = coverage_report(grid_quick, [("flow", "elsewhere", "a", "b")])
    assert report.hit == frozenset() and report.percent == 0
