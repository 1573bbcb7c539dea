"""Restricted script engine: escapes are refused, ordinary process scripts work."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

# Let `pytest` (not only `python -m pytest`) import the project's packages.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from SpiffWorkflow.bpmn import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.exceptions import WorkflowException  # noqa: E402
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402

from workflows.clock import case_clock  # noqa: E402
from workflows.scripting import (  # noqa: E402
    HELPER_NAMES,
    RestrictedEnvironment,
    ScriptRejected,
    add_duration,
    check_expression,
    check_script,
    check_timer_expression,
    days_between,
    isoformat,
    make_script_engine,
    parse_datetime,
)

AT = datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)


@pytest.fixture
def env():
    return RestrictedEnvironment()


# --- escapes ------------------------------------------------------------------

ESCAPES = [
    "().__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen']",
    "import os",
    "from os import system",
    "open('/etc/passwd')",
    "__import__('os')",
    "getattr(x, '__class__')",
    "eval('1 + 1')",
    "exec('y = 1')",
    "compile('1', 'f', 'eval')",
    "type(x).__mro__",
    "x.__class__",
    "'{0.__class__}'.format(x)",
    "globals()",
    "vars()",
    "(i for i in [1]).gi_frame",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_fails_in_execute(env, source):
    data = {"x": 1}
    with pytest.raises((ScriptRejected, NameError, NotImplementedError, ImportError, AttributeError)):
        env.execute(f"result = {source}" if not source.startswith(("import", "from")) else source, data)
    assert "result" not in data


@pytest.mark.parametrize("source", [s for s in ESCAPES if not s.startswith(("import", "from"))])
def test_escape_fails_in_evaluate(env, source):
    with pytest.raises((ScriptRejected, NameError, NotImplementedError, AttributeError)):
        env.evaluate(source, {"x": 1})


@pytest.mark.parametrize("source", ["import os", "from os import path", "().__class__", "__import__('os')",
                                    "type(x).__mro__", "eval('1')"])
def test_escapes_are_rejected_at_compile_time(source):
    assert check_script(source) is not None


def test_compile_error_names_the_line_and_the_restriction(env):
    with pytest.raises(ScriptRejected) as info:
        env.execute("a = 1\nb = a.__class__\n", {})
    message = str(info.value)
    assert "line 2" in message
    assert '"__class__" is an invalid attribute name' in message
    assert "b = a.__class__" in message
    assert info.value.lineno == 2


def test_compile_error_leaves_task_data_untouched(env):
    data = {"a": 1}
    with pytest.raises(ScriptRejected):
        env.execute("b = 2\nimport os", data)
    assert data == {"a": 1}


def test_non_dict_writes_are_refused(env):
    # _write_ wraps anything that is not a dict/list, so attributes cannot be set.
    with pytest.raises(TypeError):
        env.execute("t = now()\nt.year = 1", {})


# --- ordinary scripts ----------------------------------------------------------

def test_assignments_and_mutation_update_task_data_in_place(env):
    data = {"items": [3, 1, 2], "form": {"name": "王"}}
    script = "\n".join([
        "total = 0",
        "for n in items:",
        "    total += n",
        "items.append(4)",
        "form['checked'] = True",
        "form.update({'extra': 1})",
        "doubled = [n * 2 for n in sorted(items) if n > 1]",
        "first, second = items[0], items[1]",
        "pairs = {k: v for k, v in zip(['a', 'b'], [1, 2])}",
        "for i, (k, v) in enumerate(sorted(pairs.items())):",
        "    last = f'{i}:{k}={v}'",
        "tags = set(['x'])",
        "tags.add('y')",
        "tags = sorted(tags)",
        "text = 'sum is %d' % total",
        "label = ', '.join(str(n) for n in reversed(items))",
        "words = 'a-b'.split('-')",
        "words += ['c']",
        "print('printed output is collected, not an error')",
    ])
    assert env.execute(script, data) is True
    assert data["total"] == 6
    assert data["items"] == [3, 1, 2, 4]
    assert data["form"] == {"name": "王", "checked": True, "extra": 1}
    assert data["doubled"] == [4, 6, 8]
    assert (data["first"], data["second"]) == (3, 1)
    assert data["pairs"] == {"a": 1, "b": 2}
    assert data["last"] == "1:b=2"
    assert data["tags"] == ["x", "y"]
    assert data["text"] == "sum is 6"
    assert data["label"] == "4, 2, 1, 3"
    assert data["words"] == ["a", "b", "c"]


def test_nothing_but_data_is_left_behind(env):
    data = {"a": 1}
    env.execute("b = len([1, 2])\nprint(b)\ndef helper(v):\n    return v + 1\nc = helper(b)", data)
    assert data == {"a": 1, "b": 2, "c": 3}
    assert not HELPER_NAMES & set(data)
    assert "__builtins__" not in data
    assert not any(key.startswith("_") for key in data)


@pytest.mark.parametrize("expression, expected", [
    ('amount > 10000 and category in ["a", "b"]', True),
    ('amount > 10000 and category in ["c"]', False),
    ("len(tags) == 2 and any(t == 'urgent' for t in tags)", True),
    ("max(scores) - min(scores)", 7),
    ("round(sum(scores) / len(scores), 1)", 5.7),
    ("amount if amount < 100 else 100", 100),
    ("tags[-1]", "noise"),
    ("tags[:1]", ["urgent"]),
    ("isinstance(amount, int)", True),
    ("dict(a=1)", {"a": 1}),
])
def test_conditions(env, expression, expected):
    data = {"amount": 20000, "category": "a", "tags": ["urgent", "noise"], "scores": [3, 10, 4]}
    assert env.evaluate(expression, data) == expected
    assert data == {"amount": 20000, "category": "a", "tags": ["urgent", "noise"], "scores": [3, 10, 4]}


def test_now_follows_the_case_clock(env):
    with case_clock(AT):
        assert env.evaluate("now()", {}) == AT
        data = {}
        env.execute('due = isoformat(add_duration(now(), "PT4H"))', data)
    assert data == {"due": "2026-03-01T12:30:00+00:00"}


def test_helpers_in_scripts(env):
    data = {"reported_at": "2026-03-01T08:00:00+08:00"}
    with case_clock(AT):
        env.execute("\n".join([
            "age_days = days_between(reported_at, now())",
            "overdue = now() > add_duration(reported_at, 'P1DT2H')",
            "soon = isoformat(parse_datetime(reported_at) + timedelta(hours=2))",
        ]), data)
    assert data["age_days"] == pytest.approx(8.5 / 24)  # 00:00Z -> 08:30Z
    assert data["overdue"] is False
    assert data["soon"] == "2026-03-01T10:00:00+08:00"


def test_task_data_named_like_a_helper_is_refused(env):
    with pytest.raises(ValueError, match="now"):
        env.execute("x = 1", {"now": "2026-01-01"})


def test_data_cannot_replace_the_guards(env):
    # Even if data carried a guard's name, evaluate keeps the real guard.
    with pytest.raises(ScriptRejected):
        env.evaluate("x.__class__", {"x": 1, "_getattr_": getattr})
    with pytest.raises(ValueError):
        env.execute("y = 1", {"_getattr_": getattr})


def test_helper_names():
    assert {"now", "parse_datetime", "add_duration", "isoformat", "days_between", "timedelta"} <= HELPER_NAMES
    assert {"len", "sorted", "zip", "reversed"} <= HELPER_NAMES
    assert "open" not in HELPER_NAMES


def test_compiled_code_is_cached(env):
    from workflows import scripting

    source = "cache_probe_value > 1"
    env.evaluate(source, {"cache_probe_value": 2})
    hits = scripting._compile.cache_info().hits
    env.evaluate(source, {"cache_probe_value": 3})
    assert scripting._compile.cache_info().hits == hits + 1


# --- date helpers ---------------------------------------------------------------

def test_parse_datetime():
    assert parse_datetime("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_datetime("2026-01-01T08:00:00+08:00") == datetime(2026, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="timezone"):
        parse_datetime("2026-01-01T00:00:00")
    with pytest.raises(ValueError):
        parse_datetime("tomorrow")


@pytest.mark.parametrize("duration, delta", [
    ("PT4H", timedelta(hours=4)),
    ("P2D", timedelta(days=2)),
    ("P1DT2H", timedelta(days=1, hours=2)),
    ("PT30M", timedelta(minutes=30)),
    ("P1W", timedelta(weeks=1)),
    ("PT0.5S", timedelta(seconds=0.5)),
])
def test_add_duration(duration, delta):
    assert add_duration(AT, duration) == AT + delta
    assert add_duration(AT.isoformat(), duration) == AT + delta


@pytest.mark.parametrize("duration", ["P1M", "P1Y", "P1Y2M3D"])
def test_add_duration_refuses_months_and_years(duration):
    with pytest.raises(ValueError, match="months"):
        add_duration(AT, duration)


@pytest.mark.parametrize("duration", ["PT1D", "P", "PT", "4H", "P1DT", ""])
def test_add_duration_refuses_malformed(duration):
    with pytest.raises(ValueError):
        add_duration(AT, duration)


def test_isoformat_and_days_between():
    assert isoformat(AT) == "2026-03-01T08:30:00+00:00"
    assert days_between("2026-03-01T00:00:00Z", "2026-03-03T12:00:00Z") == 2.5
    assert days_between(AT, AT - timedelta(days=1)) == -1


# --- deploy-time checks ----------------------------------------------------------

def test_check_expression():
    assert check_expression('amount > 10000 and category in ["a", "b"]') is None
    assert check_expression("x = 1") == "line 1: SyntaxError: invalid syntax"
    assert check_expression("().__class__") == (
        'line 1: "__class__" is an invalid attribute name because it starts with "_".')
    assert check_expression("") is not None


def test_check_script():
    assert check_script("a = 1\nb = [a]\nb.append(2)") is None
    assert check_script("a = 1\nb = = 2") == "line 2: SyntaxError: invalid syntax"
    assert check_script("import os") == "line 1: imports are not allowed"
    error = check_script("x = 1\ny = 2\nz = y._private")
    assert error.startswith("line 3: ") and "\n" not in error


@pytest.mark.parametrize("source", [
    '"PT4H"', "'P2D'", '"P1DT2H"', '"2026-01-01T00:00:00+08:00"', '"2026-01-01T00:00:00Z"',
    "due_at", 'add_duration(reported_at, "P1D")', '"R3/PT1H"',
])
def test_check_timer_expression_good(source):
    assert check_timer_expression(source) is None


@pytest.mark.parametrize("source", [
    '"PT1D"', '"2026-01-01T00:00:00"', '"4 hours"', '"P"', "42", "due_at.__class__", '"R3/2026-01-01T00:00:00/PT1H"',
])
def test_check_timer_expression_bad(source):
    error = check_timer_expression(source)
    assert error is not None and "\n" not in error


def test_check_timer_expression_kind():
    assert check_timer_expression('"PT4H"', kind="duration") is None
    assert check_timer_expression('"PT4H"', kind="date") is not None
    assert check_timer_expression('"2026-01-01T00:00:00Z"', kind="date") is None
    assert check_timer_expression('"R2/P1D"', kind="cycle") is None


# --- end to end through SpiffWorkflow ----------------------------------------------

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs" targetNamespace="http://gridcase.test">
  <bpmn:process id="triage" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="score" name="Score">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="route" default="to_small">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>to_big</bpmn:outgoing><bpmn:outgoing>to_small</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="score" />
    <bpmn:sequenceFlow id="f2" sourceRef="score" targetRef="route" />
    <bpmn:sequenceFlow id="to_big" sourceRef="route" targetRef="end_big">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">total &gt; 10000 and category in ["a", "b"]</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="to_small" sourceRef="route" targetRef="end_small" />
    <bpmn:endEvent id="end_big"><bpmn:incoming>to_big</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_small"><bpmn:incoming>to_small</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""

SCORE = "total = sum(amounts)\ndue = isoformat(add_duration(now(), 'PT4H'))"


def _run(script: str, **data) -> BpmnWorkflow:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(BPMN.format(script=script).encode(), "triage.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("triage"), parser.get_subprocess_specs("triage"),
                            script_engine=make_script_engine())
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data.update(data)
    with case_clock(AT):
        workflow.do_engine_steps()
    return workflow


def _completed(workflow: BpmnWorkflow) -> set[str]:
    return {t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.COMPLETED) if t.task_spec.bpmn_id}


@pytest.mark.parametrize("amounts, category, end", [
    ([6000, 5000], "a", "end_big"),
    ([6000, 5000], "c", "end_small"),
    ([100], "a", "end_small"),
])
def test_workflow_runs_script_and_takes_the_right_branch(amounts, category, end):
    workflow = _run(SCORE, amounts=amounts, category=category)
    assert workflow.is_completed()
    other = ({"end_big", "end_small"} - {end}).pop()
    assert end in _completed(workflow) and other not in _completed(workflow)
    data = workflow.last_task.data
    assert data["total"] == sum(amounts)
    assert data["due"] == "2026-03-01T12:30:00+00:00"
    assert not HELPER_NAMES & set(data)


@pytest.mark.parametrize("script", ["import os", "x = open('/etc/passwd').read()", "x = ().__class__"])
def test_workflow_with_forbidden_script_raises(script):
    with pytest.raises(WorkflowException):
        _run(script, amounts=[1], category="a")
