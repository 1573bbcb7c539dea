"""Scenario files: walk one path through a process and check where it ends up.

A scenario (``<process>/scenarios/*.json``, format in bpmn/README.md) is run through
the real :class:`~workflows.engine.Engine`, exactly as the application drives it:
``start``, ``complete`` (form validation, and the lane's role when the step names
one), ``fire_timers`` and ``deliver_message``, each at the scenario's clock, and the
case state is saved and loaded again after every operation, as every request does.

Details the README leaves open, settled here:

- ``name`` defaults to the file name; ``steps`` and the final ``expect`` are optional;
  ``start.at`` is required (an aware ISO datetime), ``start.data`` defaults to ``{}``.
  Objects may carry a ``description`` and keys starting with ``_`` (comments);
  any other unknown key is an error, with a suggestion when it looks like a typo.
- A step is one of ``complete``, ``advance``, ``message`` or ``expect``. An action
  step may also carry an ``expect``, checked right after the action.
- Time: ``after`` (ISO duration, default ``PT10M``) or ``at`` (aware datetime, never
  earlier than the clock) on ``complete``/``message``. ``advance`` takes a duration
  or an absolute aware datetime; it fires the timers due by then one due time after
  another (each at its due time plus one second: SpiffWorkflow fires a timer only
  once the clock is strictly past it), so whatever a timer starts runs at the time
  it would in the application; the clock then rests at the target.
- A ``complete`` or ``message`` step whose time is past a waiting timer's due time
  fails: in the application the timer would fire first. Add an ``advance`` step.
- ``expect``: ``ready`` and ``timers`` compare sorted lists of BPMN ids exactly;
  ``data`` is a subset match on top-level keys (values compare exactly; an ISO
  string matches an equal datetime); ``ended`` is a boolean; ``end_event`` is the
  last end event reached in the top-level process so far (``null``: none yet).

Nothing here knows about Flask, SQL or Redis.
"""
from __future__ import annotations

import difflib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence
from uuid import UUID

from workflows.coverage import CoverageCollector, CoverageReport, coverage_report
from workflows.definitions import ProcessDefinition
from workflows.engine import CaseRun, Engine, Outcome
from workflows.errors import EngineError, FormInvalid, MessageNotAwaited, WrongRole
from workflows.scripting import parse_datetime, parse_duration

DEFAULT_GAP = timedelta(minutes=10)
TIMER_LATENCY = timedelta(seconds=1)
MAX_TIMER_FIRINGS = 1000

EXPECT_KEYS = ("ready", "data", "ended", "end_event", "timers")
ACTIONS = ("complete", "advance", "message")
_TOP_KEYS = ("name", "process", "start", "steps", "expect")
_START_KEYS = ("at", "data")
_STEP_KEYS = {
    "complete": ("complete", "data", "role", "after", "at", "expect"),
    "message": ("message", "payload", "correlations", "after", "at", "expect"),
    "advance": ("advance", "expect"),
    "expect": ("expect",),
}
_MISSING = object()


# --- the format -----------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    index: int
    kind: str                              # complete | advance | message | expect
    target: str | None = None              # task id (complete) or message name
    data: Mapping[str, Any] = field(default_factory=dict)          # form data (complete)
    role: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    correlations: Mapping[str, Any] = field(default_factory=dict)
    after: timedelta | None = None
    at: datetime | None = None
    advance_by: timedelta | None = None
    advance_to: datetime | None = None
    expect: Mapping[str, Any] | None = None  # EXPECT_KEYS -> expected value

    @property
    def where(self) -> str:
        if self.kind == "advance":
            what = f"advance {_show_time(self.advance_to) if self.advance_to else _iso_duration(self.advance_by)}"
        elif self.kind == "expect":
            what = "expect"
        else:
            what = f"{self.kind} {self.target}"
        return f"steps[{self.index}] ({what})"


@dataclass(frozen=True)
class Scenario:
    name: str
    process: str
    file: str
    start_at: datetime
    start_data: Mapping[str, Any]
    steps: tuple[Step, ...]
    expect: Mapping[str, Any] | None


class ScenarioFormatError(ValueError):
    """A scenario file that is not a valid scenario; names the file and where in it."""

    def __init__(self, file: str, problems: Sequence[tuple[str, str]]):
        self.file = file
        self.problems = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "; ".join(f"{self.file}: {where}: {message}" if where else f"{self.file}: {message}"
                         for where, message in self.problems)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file (raises :class:`ScenarioFormatError`)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFormatError(file, [("", f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise ScenarioFormatError(file, [("", f"duplicate key {exc.key!r} in one object")]) from None
    except json.JSONDecodeError as exc:
        raise ScenarioFormatError(file, [(f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}")]) from None
    return parse_scenario(document, file)


def parse_scenario(document: Any, file: str = "<scenario>") -> Scenario:
    """Validate a decoded scenario document; every problem is reported at once."""
    problems: list[tuple[str, str]] = []

    def bad(where: str, message: str) -> None:
        problems.append((where, message))

    if not isinstance(document, dict):
        raise ScenarioFormatError(file, [("", f"a scenario is a JSON object, not {_json_type(document)}")])
    _unknown_keys(document, _TOP_KEYS, "", "a scenario", bad)

    name = document.get("name", _MISSING)
    if name is _MISSING:
        name = Path(file).stem
    elif not _nonempty_str(name):
        bad("name", "must be a non-empty string")
    process = document.get("process", _MISSING)
    if process is _MISSING:
        bad("process", "missing: the id of the process the scenario runs")
    elif not _nonempty_str(process):
        bad("process", "must be a non-empty string (a process id)")

    start_at, start_data = None, {}
    start = document.get("start", _MISSING)
    if start is _MISSING:
        bad("start", 'missing: {"at": "<aware ISO datetime>", "data": {...}}')
    elif not isinstance(start, dict):
        bad("start", f"must be an object, not {_json_type(start)}")
    else:
        _unknown_keys(start, _START_KEYS, "start", "start", bad)
        if "at" not in start:
            bad("start.at", "missing: when the case starts, an ISO datetime with offset, e.g. 2026-03-02T09:00:00+08:00")
        else:
            start_at = _datetime(start["at"], "start.at", bad)
        start_data = _object(start.get("data", {}), "start.data", bad)

    steps: list[Step] = []
    raw_steps = document.get("steps", [])
    if not isinstance(raw_steps, list):
        bad("steps", f"must be a list, not {_json_type(raw_steps)}")
    else:
        for index, raw in enumerate(raw_steps):
            step = _parse_step(index, raw, bad)
            if step is not None:
                steps.append(step)

    expect = None
    if "expect" in document:
        expect = _parse_expect(document["expect"], "expect", bad)

    if problems:
        raise ScenarioFormatError(file, problems)
    return Scenario(
        name=name, process=process, file=file, start_at=start_at, start_data=MappingProxyType(dict(start_data)),
        steps=tuple(steps), expect=expect,
    )


def _parse_step(index: int, raw: Any, bad) -> Step | None:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        bad(where, f"a step is an object, not {_json_type(raw)}")
        return None
    actions = [key for key in ACTIONS if key in raw]
    if len(actions) > 1:
        bad(where, f"one action per step, found {' and '.join(actions)}")
        return None
    kind = actions[0] if actions else ("expect" if "expect" in raw else None)
    if kind is None:
        bad(where, "a step needs one of: complete, advance, message, expect"
                   + _unknown_hint(raw, sorted({k for keys in _STEP_KEYS.values() for k in keys})))
        return None
    _unknown_keys(raw, _STEP_KEYS[kind], where, f"{'an' if kind[0] in 'ae' else 'a'} {kind} step", bad)
    # Any problem makes the whole file invalid, so fields may be left at defaults here.
    fields: dict[str, Any] = {}
    if kind in ("complete", "message"):
        target = raw[kind]
        if not _nonempty_str(target):
            bad(f"{where}.{kind}", "must be a non-empty string (the task's BPMN id)" if kind == "complete"
                else "must be a non-empty string (the message name)")
        fields["target"] = target
        if "after" in raw and "at" in raw:
            bad(where, "give either after or at, not both")
        elif "after" in raw:
            fields["after"] = _duration(raw["after"], f"{where}.after", bad)
        elif "at" in raw:
            fields["at"] = _datetime(raw["at"], f"{where}.at", bad)
    if kind == "complete":
        fields["data"] = MappingProxyType(dict(_object(raw.get("data", {}), f"{where}.data", bad)))
        if "role" in raw:
            if not _nonempty_str(raw["role"]):
                bad(f"{where}.role", "must be a role identifier, e.g. grid_member")
            fields["role"] = raw["role"]
    if kind == "message":
        fields["payload"] = MappingProxyType(dict(_object(raw.get("payload", {}), f"{where}.payload", bad)))
        fields["correlations"] = MappingProxyType(dict(_object(raw.get("correlations", {}), f"{where}.correlations", bad)))
    if kind == "advance":
        value = raw["advance"]
        if not _nonempty_str(value):
            bad(f"{where}.advance", 'must be an ISO duration ("P3D") or an aware ISO datetime')
        elif value.strip().upper().startswith("P"):
            fields["advance_by"] = _duration(value, f"{where}.advance", bad)
        else:
            fields["advance_to"] = _datetime(value, f"{where}.advance", bad)
    if "expect" in raw:
        fields["expect"] = _parse_expect(raw["expect"], f"{where}.expect", bad)
    return Step(index=index, kind=kind, **fields)


def _parse_expect(raw: Any, where: str, bad) -> Mapping[str, Any] | None:
    if not isinstance(raw, dict):
        bad(where, f"must be an object, not {_json_type(raw)}")
        return None
    unknown = [k for k in raw if k not in EXPECT_KEYS and k != "description" and not k.startswith("_")]
    for key in unknown:
        bad(f"{where}.{key}", f"unknown expectation{_suggest(key, EXPECT_KEYS)} (known: {', '.join(EXPECT_KEYS)})")
    checks = {k: raw[k] for k in EXPECT_KEYS if k in raw}
    if not checks and not unknown:
        bad(where, f"names nothing to check (known: {', '.join(EXPECT_KEYS)})")
    for key in ("ready", "timers"):
        if key in checks and not (isinstance(checks[key], list) and all(_nonempty_str(v) for v in checks[key])):
            bad(f"{where}.{key}", "must be a list of BPMN ids")
    if "data" in checks and not isinstance(checks["data"], dict):
        bad(f"{where}.data", f"must be an object of key/values, not {_json_type(checks['data'])}")
    if "ended" in checks and not isinstance(checks["ended"], bool):
        bad(f"{where}.ended", "must be true or false")
    if "end_event" in checks and checks["end_event"] is not None and not _nonempty_str(checks["end_event"]):
        bad(f"{where}.end_event", "must be an end event's BPMN id (or null: none reached yet)")
    return MappingProxyType(checks)


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _unknown_keys(obj: Mapping[str, Any], allowed: Sequence[str], where: str, what: str, bad) -> None:
    for key in obj:
        if key in allowed or key == "description" or key.startswith("_"):
            continue
        at = f"{where}.{key}" if where else key
        bad(at, f"unknown key in {what}{_suggest(key, allowed)} (allowed: {', '.join(allowed)})")


def _unknown_hint(obj: Mapping[str, Any], known: Sequence[str]) -> str:
    hints = [f"{key!r}{_suggest(key, known)}" for key in obj if key not in known and key != "description"
             and not key.startswith("_")]
    return f"; unknown keys: {', '.join(hints)}" if hints else ""


def _suggest(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _object(value: Any, where: str, bad) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        bad(where, f"must be an object, not {_json_type(value)}")
        return {}
    return value


def _duration(value: Any, where: str, bad) -> timedelta | None:
    if not isinstance(value, str):
        bad(where, f'must be an ISO 8601 duration string such as "PT30M" or "P2D", not {_json_type(value)}')
        return None
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        bad(where, str(exc))
        return None


def _datetime(value: Any, where: str, bad) -> datetime | None:
    if not isinstance(value, str):
        bad(where, f"must be an ISO 8601 datetime string with offset, not {_json_type(value)}")
        return None
    try:
        return parse_datetime(value)
    except (ValueError, TypeError) as exc:
        bad(where, str(exc))
        return None


def discover(path: str | Path) -> list[Path]:
    """Scenario files under ``path``: every ``scenarios/*.json`` below a folder (hidden
    folders skipped), the ``*.json`` of a ``scenarios`` folder itself, or one file."""
    root = Path(path)
    if root.is_file():
        return [root]
    if root.name == "scenarios":
        return sorted(p for p in root.glob("*.json") if p.is_file())
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if Path(folder).name == "scenarios" and Path(folder) != root:
            found.extend(Path(folder, n) for n in names if n.endswith(".json") and not n.startswith("."))
    return sorted(found)


# --- running ------------------------------------------------------------------

@dataclass(frozen=True)
class ScenarioFailure:
    where: str                 # "file", "start", "steps[3] (complete review)", "final expect"
    step: int | None           # index into steps, when a step failed
    message: str
    ready: tuple[str, ...] | None = None   # READY user task ids at that point (None: no case yet)

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.ready is not None:
            text += f" (ready tasks: {', '.join(self.ready) or 'none'})"
        return text


@dataclass(frozen=True)
class ScenarioResult:
    file: str
    name: str
    process: str | None
    failure: ScenarioFailure | None
    hits: frozenset = frozenset()

    @property
    def passed(self) -> bool:
        return self.failure is None

    def line(self) -> str:
        if self.process is None:  # not even a valid scenario
            return f"FAIL {self.file}: {self.failure}"
        head = f"{'PASS' if self.passed else 'FAIL'} {self.process}: {self.name} ({self.file})"
        return head if self.passed else f"{head}: {self.failure}"


class _Failed(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _ScenarioRun:
    def __init__(self, scenario: Scenario, definition: ProcessDefinition, engine: Engine):
        self.scenario = scenario
        self.definition = definition
        self.engine = engine
        self.tz = scenario.start_at.tzinfo
        self.clock = scenario.start_at
        self.run: CaseRun | None = None
        self.last_end_event: str | None = None
        self.collector = CoverageCollector()

    def execute(self) -> ScenarioFailure | None:
        where, index = "start", None
        try:
            self._start()
            for step in self.scenario.steps:
                where, index = step.where, step.index
                self._step(step)
                if step.expect is not None:
                    self._check(step.expect)
            if self.scenario.expect is not None:
                where, index = "final expect", None
                self._check(self.scenario.expect)
        except _Failed as failure:
            return ScenarioFailure(where, index, failure.message, self._ready())
        except Exception as exc:  # a bug or an engine surprise: report it, never a traceback
            return ScenarioFailure(where, index, f"unexpected error: {type(exc).__name__}: {exc}", self._ready())
        return None

    # -- operations ----------------------------------------------------------
    def _start(self) -> None:
        try:
            self.run, outcome = self.engine.start(self.definition, dict(self.scenario.start_data), at=self.clock)
        except FormInvalid as exc:
            raise _Failed(f"start data rejected: {_fields(exc)}") from None
        except EngineError as exc:
            raise _Failed(f"the case did not start: {exc}") from None
        self._after(outcome)

    def _step(self, step: Step) -> None:
        if step.kind == "expect":
            return
        if step.kind == "advance":
            return self._advance(step)
        at = self._step_time(step)
        if step.kind == "complete":
            outcome = self._complete(step, at)
        else:
            outcome = self._message(step, at)
        self.clock = at
        self._after(outcome)

    def _complete(self, step: Step, at: datetime) -> Outcome:
        candidates = [t for t in self.run.ready_tasks() if t.spec_id == step.target]
        if not candidates:
            raise _Failed(f"{step.target} is not a READY user task")
        if len(candidates) > 1:
            raise _Failed(f"{len(candidates)} READY tasks are {step.target}: a step completes a single task")
        if step.role is not None and step.role not in self.engine.roles:
            raise _Failed(f"role {step.role!r} is not in the role catalogue (roles.json)")
        try:
            return self.run.complete(candidates[0].task_id, dict(step.data), at=at, role=step.role)
        except FormInvalid as exc:
            raise _Failed(f"form data rejected: {_fields(exc)}") from None
        except WrongRole as exc:
            raise _Failed(f"{step.target} is done by role {exc.lane_role!r} (its lane), not {exc.acting_role!r}") from None
        except EngineError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None

    def _message(self, step: Step, at: datetime) -> Outcome:
        try:
            return self.run.deliver_message(step.target, dict(step.payload), dict(step.correlations), at=at)
        except MessageNotAwaited:
            raise _Failed(f"the case is not waiting for message {step.target!r}") from None
        except EngineError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None

    def _advance(self, step: Step) -> None:
        target = step.advance_to if step.advance_to is not None else self.clock + step.advance_by
        if target < self.clock:
            raise _Failed(f"cannot advance to {_show_time(target, self.tz)}: the clock is already at "
                          f"{_show_time(self.clock, self.tz)}")
        for _ in range(MAX_TIMER_FIRINGS):
            due = [t for t in self.run.waiting_timers() if t.due_at <= target]
            if not due:
                break
            first = min(t.due_at for t in due)
            fire_at = min(first + TIMER_LATENCY, target) if first < target else first + TIMER_LATENCY
            fire_at = max(fire_at, self.clock)
            before = {(t.task_id, t.due_at) for t in due if t.due_at < fire_at}
            try:
                outcome = self.run.fire_timers(at=fire_at)
            except EngineError as exc:
                raise _Failed(f"firing timers at {_show_time(fire_at, self.tz)}: {type(exc).__name__}: {exc}") from None
            self.clock = fire_at
            self._after(outcome)
            stuck = before & {(t.task_id, t.due_at) for t in self.run.waiting_timers()}
            if stuck:
                names = ", ".join(sorted({t.spec_id for t in self.run.waiting_timers() if (t.task_id, t.due_at) in stuck}))
                raise _Failed(f"timer {names} was due but did not fire at {_show_time(fire_at, self.tz)}")
        else:
            raise _Failed(f"more than {MAX_TIMER_FIRINGS} timer firings before {_show_time(target, self.tz)} "
                          "(a cycle timer that never ends?)")
        self.clock = max(self.clock, target)

    def _step_time(self, step: Step) -> datetime:
        if step.at is not None:
            if step.at < self.clock:
                raise _Failed(f"at {_show_time(step.at, self.tz)} is earlier than the case clock "
                              f"{_show_time(self.clock, self.tz)}: time cannot go backwards")
            at = step.at
        else:
            at = self.clock + (step.after if step.after is not None else DEFAULT_GAP)
        overdue = sorted((t for t in self.run.waiting_timers() if t.due_at < at), key=lambda t: (t.due_at, t.spec_id))
        if overdue:
            timer = overdue[0]
            gap = timer.due_at - self.clock  # advance fires timers due up to and including its target
            raise _Failed(
                f"this step happens at {_show_time(at, self.tz)}, but timer {timer.spec_id} ({timer.name}) was due at "
                f"{_show_time(timer.due_at, self.tz)}: in the application it fires first. Add "
                f'{{"advance": "{_iso_duration(max(gap, timedelta(0)))}"}} before this step, or do this step earlier'
            )
        return at

    def _after(self, outcome: Outcome) -> None:
        """Record coverage and the last end event, then save and reload the case like a request does."""
        workflow = self.run.workflow
        self.collector.observe(workflow, outcome.completed)
        for step in outcome.completed:
            if step.kind == "EndEvent":
                try:
                    task = workflow.get_task_from_id(UUID(step.task_id))
                except Exception:
                    continue
                if task.workflow is workflow:
                    self.last_end_event = step.spec_id
        try:
            saved = self.engine.dump(self.run)
        except Exception as exc:
            raise _Failed(f"the case state cannot be saved (the application would fail here): "
                          f"{type(exc).__name__}: {exc}") from None
        self.run = self.engine.load(self.definition, saved)

    # -- expectations ----------------------------------------------------------
    def _check(self, expect: Mapping[str, Any]) -> None:
        problems = []
        if "ready" in expect:
            actual = sorted(t.spec_id for t in self.run.ready_tasks())
            if actual != sorted(expect["ready"]):
                problems.append(f"ready: expected {_show(sorted(expect['ready']))}, got {_show(actual)}")
        if "data" in expect:
            data = self.run.data
            for key, wanted in expect["data"].items():
                if key not in data:
                    problems.append(f"data.{key}: expected {_show(wanted)}, but the case data has no {key!r}")
                elif not _matches(wanted, data[key]):
                    problems.append(f"data.{key}: expected {_show(wanted)}, got {_show(data[key])}")
        if "ended" in expect and self.run.ended != expect["ended"]:
            problems.append(f"ended: expected {_show(expect['ended'])}, got {_show(self.run.ended)}")
        if "end_event" in expect and self.last_end_event != expect["end_event"]:
            problems.append(f"end_event: expected {_show(expect['end_event'])}, got {_show(self.last_end_event)}")
        if "timers" in expect:
            actual = sorted(t.spec_id for t in self.run.waiting_timers())
            if actual != sorted(expect["timers"]):
                problems.append(f"timers: expected {_show(sorted(expect['timers']))}, got {_show(actual)}")
        if problems:
            raise _Failed("; ".join(problems))

    def _ready(self) -> tuple[str, ...] | None:
        if self.run is None:
            return None
        try:
            return tuple(sorted(t.spec_id for t in self.run.ready_tasks()))
        except Exception:
            return None


def run_scenario(scenario: Scenario, definition: ProcessDefinition, engine: Engine) -> ScenarioResult:
    """Run one scenario against a definition; never raises for a failing scenario."""
    if definition.process_id != scenario.process:
        raise ValueError(f"scenario is for {scenario.process!r}, not {definition.process_id!r}")
    runner = _ScenarioRun(scenario, definition, engine)
    failure = runner.execute()
    return ScenarioResult(scenario.file, scenario.name, scenario.process, failure, frozenset(runner.collector.hits))


# --- suites -----------------------------------------------------------------------

@dataclass(frozen=True)
class SuiteReport:
    results: tuple[ScenarioResult, ...]
    coverage: tuple[CoverageReport, ...]   # one per process that has scenarios
    untested: tuple[ProcessDefinition, ...]  # processes with no scenarios that no other process calls

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def full_coverage(self) -> bool:
        return all(c.full for c in self.coverage) and not self.untested

    def lines(self) -> list[str]:
        lines = [r.line() for r in self.results]
        for report in self.coverage:
            lines.extend(report.lines())
        for definition in self.untested:
            lines.append(f"coverage {definition.process_id} ({definition.name}): no scenarios")
        failed = sum(1 for r in self.results if not r.passed)
        lines.append(f"{len(self.results)} scenario(s): {len(self.results) - failed} passed, {failed} failed")
        return lines


def run_suite(
    files: Iterable[str | Path], definitions: Mapping[str, ProcessDefinition] | Iterable[ProcessDefinition],
    engine: Engine,
    *,
    report_untested: bool = True,
) -> SuiteReport:
    """Run every scenario file against the definitions (by process id) and measure coverage.

    ``report_untested``: list the definitions that no scenario runs and no other definition
    calls (turn it off when running one folder's scenarios against a whole library)."""
    if not isinstance(definitions, Mapping):
        definitions = {d.process_id: d for d in definitions}
    results: list[ScenarioResult] = []
    hits: dict[str, set] = defaultdict(set)
    for file in files:
        try:
            scenario = load_scenario(file)
        except ScenarioFormatError as exc:
            message = "; ".join(f"{w}: {m}" if w else m for w, m in exc.problems)
            results.append(ScenarioResult(str(file), Path(file).name, None,
                                          ScenarioFailure("not a valid scenario", None, message)))
            continue
        definition = definitions.get(scenario.process)
        if definition is None:
            known = ", ".join(sorted(definitions)) or "none"
            results.append(ScenarioResult(scenario.file, scenario.name, scenario.process, ScenarioFailure(
                "process", None, f"no valid process {scenario.process!r} was loaded here (loaded: {known})")))
            continue
        result = run_scenario(scenario, definition, engine)
        results.append(result)
        hits[scenario.process] |= result.hits
    tested = sorted({r.process for r in results if r.process in definitions})
    called = {name for d in definitions.values() for name in d.subprocess_specs}
    return SuiteReport(
        results=tuple(results),
        coverage=tuple(coverage_report(definitions[p], hits[p]) for p in tested),
        untested=tuple(definitions[p] for p in sorted(definitions)
                       if report_untested and p not in tested and p not in called),
    )


# --- helpers ------------------------------------------------------------------------

def _fields(exc: FormInvalid) -> str:
    return "; ".join(f"{key}: {', '.join(messages)}" for key, messages in sorted(exc.fields.items()))


def _matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(actual, datetime) and isinstance(expected, str):
        try:
            wanted = datetime.fromisoformat(expected)
            return (wanted.tzinfo is None) == (actual.tzinfo is None) and wanted == actual
        except ValueError:
            return False
    if isinstance(actual, date) and not isinstance(actual, datetime) and isinstance(expected, str):
        return actual.isoformat() == expected
    if isinstance(actual, Decimal) and isinstance(expected, (int, float, str)):
        try:
            return Decimal(str(expected)) == actual
        except InvalidOperation:
            return False
    if isinstance(expected, dict) and isinstance(actual, Mapping):
        return expected.keys() == actual.keys() and all(_matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, (list, tuple)):
        return len(expected) == len(actual) and all(_matches(e, a) for e, a in zip(expected, actual))
    return expected == actual


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _show_time(value: datetime | None, tz=None) -> str:
    if value is None:
        return "-"
    return (value.astimezone(tz) if tz is not None else value).isoformat()


def _iso_duration(delta: timedelta | None) -> str:
    """A timedelta as an ISO 8601 duration (days, hours, minutes, seconds)."""
    if delta is None:
        return "-"
    total = int(delta.total_seconds())
    micro = delta.microseconds
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds or micro:
        time += f"{seconds}.{micro:06d}".rstrip("0").rstrip(".") + "S"
    if time:
        text += "T" + time
    return text if text != "P" else "PT0S"
