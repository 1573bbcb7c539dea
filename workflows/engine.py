"""The engine facade: every operation the application performs on a workflow.

Each operation runs under the case clock (``at``), never trusts the caller
about task state, and returns an :class:`Outcome` describing what changed so
the application can write events, work items and timers without looking
inside SpiffWorkflow. Nothing here knows about Flask, SQL or Redis.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.exceptions import SpiffWorkflowException, TaskNotFoundException
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from SpiffWorkflow.util.task import TaskState

from workflows import clock
from workflows.definitions import ProcessDefinition
from workflows.errors import (
    EngineError,
    FormInvalid,
    MessageNotAwaited,
    ProcessFailed,
    TaskNotFound,
    TaskNotReady,
    WrongRole,
)
from workflows.forms import validate_form_data
from workflows.roles import RoleCatalogue
from workflows.scripting import HELPER_NAMES, make_script_engine
from workflows.serialization import SavedState, WorkflowSerializer

# INFO logging inside SpiffWorkflow costs about a third of throughput.
logging.getLogger("spiff").setLevel(logging.WARNING)

FORM_PROPERTY = "formJsonSchemaFilename"
# Declared time limit of a user task without boundary timers (bpmn/README.md):
#   <spiffworkflow:property name="timeLimit" value="2 working_days" />
#   <spiffworkflow:property name="timeLimitWarning" value="0.8" />   (fraction; default 0.8)
# Counted on the business calendar from when the task became ready (kept, under the case
# clock, in the task's internal data as ``sla_ready_at``).
TIME_LIMIT_PROPERTY = "timeLimit"
TIME_LIMIT_WARNING_PROPERTY = "timeLimitWarning"
TIME_LIMIT_UNITS = ("working_hours", "working_days", "hours", "days", "minutes")
DEFAULT_WARNING_FRACTION = 0.8
READY_AT_KEY = "sla_ready_at"


def parse_time_limit(value: Any, warning: Any = None) -> tuple[float, str, float]:
    """``"4 working_hours"`` (and an optional warning fraction) → (amount, unit, fraction).
    Raises ValueError with a message for process owners."""
    parts = str(value or "").split()
    if len(parts) != 2 or parts[1] not in TIME_LIMIT_UNITS:
        raise ValueError(f"timeLimit {value!r} must be '<amount> <unit>', unit one of {', '.join(TIME_LIMIT_UNITS)}")
    try:
        amount = float(parts[0])
    except ValueError:
        raise ValueError(f"timeLimit {value!r}: {parts[0]!r} is not a number") from None
    if not amount > 0:
        raise ValueError(f"timeLimit {value!r} must be positive")
    fraction = DEFAULT_WARNING_FRACTION
    if warning not in (None, ""):
        try:
            fraction = float(warning)
        except (TypeError, ValueError):
            raise ValueError(f"timeLimitWarning {warning!r} must be a fraction such as 0.8") from None
        if not 0 < fraction < 1:
            raise ValueError(f"timeLimitWarning {warning!r} must be between 0 and 1")
    return amount, parts[1], fraction


@dataclass(frozen=True)
class ReadyTask:
    """A READY manual task: what a work item is a projection of."""

    task_id: str
    spec_id: str              # BPMN element id
    name: str                 # BPMN element name (label)
    lane: str | None
    role: str | None          # role identifier the lane resolves to
    form: str | None          # form file name
    instructions: str | None  # raw instructions (Markdown/Jinja)
    due_at: datetime | None   # interrupting boundary timer (or the declared timeLimit)
    warn_at: datetime | None  # non-interrupting boundary timer (or the declared limit's warning)
    process_id: str           # the (sub)process the task belongs to
    limit_declared: bool = False  # due/warn come from the task's timeLimit property, not timers


@dataclass(frozen=True)
class WaitingTimer:
    task_id: str
    spec_id: str
    name: str
    due_at: datetime
    interrupting: bool
    attached_to: str | None   # task id of the activity a boundary timer guards


@dataclass(frozen=True)
class CompletedStep:
    task_id: str
    spec_id: str
    name: str
    kind: str                 # BPMN type, e.g. UserTask, ScriptTask, EndEvent


@dataclass(frozen=True)
class ThrownMessage:
    """A message the process sent that nothing inside it caught: the application's to route."""

    name: str
    payload: Any
    correlations: Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What one operation changed."""

    completed: tuple[CompletedStep, ...]
    ready: tuple[ReadyTask, ...]            # every READY manual task now
    newly_ready: tuple[str, ...]            # task ids that became ready in this operation
    no_longer_ready: tuple[str, ...]        # task ids that were ready before and are not now
    timers: tuple[WaitingTimer, ...]        # every WAITING timer now
    ended: bool
    end_events: tuple[str, ...]             # ids of end events reached in this operation
    data: Mapping[str, Any]                 # workflow data after the operation
    thrown: tuple[ThrownMessage, ...] = ()  # messages thrown out of the process in this operation


@dataclass
class CaseRun:
    """A live workflow for one case, bound to its definition. Single-threaded."""

    definition: ProcessDefinition
    workflow: BpmnWorkflow
    engine: "Engine"
    _ready_before: frozenset[str] = field(default_factory=frozenset)

    # -- reading -------------------------------------------------------
    def ready_tasks(self) -> tuple[ReadyTask, ...]:
        return tuple(
            self.engine._describe_ready(task)
            for task in self.workflow.get_tasks(state=TaskState.READY, manual=True)
        )

    def waiting_timers(self) -> tuple[WaitingTimer, ...]:
        return tuple(self.engine._waiting_timers(self.workflow))

    @property
    def ended(self) -> bool:
        return self.workflow.is_completed()

    @property
    def data(self) -> dict[str, Any]:
        return self.engine._case_data(self.workflow)

    # -- acting --------------------------------------------------------
    def complete(
        self,
        task_id: str,
        data: Mapping[str, Any],
        *,
        at: datetime,
        role: str | None = None,
    ) -> Outcome:
        """Complete a READY manual task with form data.

        ``role`` is the role the actor acts in; when given it must match the
        task's lane. SpiffWorkflow's ``task.run()`` checks nothing, so every
        check happens here.
        """
        task = self._get_task(task_id)
        if not (task.has_state(TaskState.READY) and task.task_spec.manual):
            raise TaskNotReady(task_id, TaskState.get_name(task.state))
        described = self.engine._describe_ready(task)
        if role is not None and described.role != role:
            raise WrongRole(task_id, described.role, role)
        clean = self.engine._check_form(self.definition, described, data)
        return self._act(at, lambda steps: self._run_user_task(task, clean, steps))

    def fire_timers(self, *, at: datetime) -> Outcome:
        """Fire every timer due at ``at``. Refresh first: without it an interrupting
        boundary timer can end READY with its activity already cancelled."""

        def act(steps: list) -> None:
            self.workflow.refresh_timers()
            self._engine_steps(steps)

        return self._act(at, act)

    def deliver_message(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        correlations: Mapping[str, Any] | None = None,
        *,
        at: datetime,
    ) -> Outcome:
        event = BpmnEvent(MessageEventDefinition(name), dict(payload or {}), dict(correlations or {}))

        def act(steps: list) -> None:
            try:
                self.workflow.send_event(event)
            except SpiffWorkflowException as exc:
                if "not waiting" in str(exc):
                    raise MessageNotAwaited(name) from exc
                raise
            self._engine_steps(steps)

        return self._act(at, act)

    def reschedule_timer(self, timer_task_id: str, due_at: datetime) -> None:
        """Move a WAITING timer's due time (a deadline extension, 延期).

        SpiffWorkflow keeps a reached timer's absolute due time in the task's internal
        data (``event_value``); rewriting it there is what dump/load and the next
        ``fire_timers`` honour. Date and duration timers hold an ISO string, cycle timers
        a dict whose ``next`` is moved. Pure: no clock, no other task changes, so replay
        can re-apply it from the recorded new due time. Refuses (and changes nothing) a
        task that is not a WAITING timer or a naive ``due_at``."""
        task = self._get_task(timer_task_id)
        if not isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition):
            raise TaskNotReady(str(timer_task_id), "not a timer")
        if not task.has_state(TaskState.WAITING):
            raise TaskNotReady(str(timer_task_id), TaskState.get_name(task.state))
        if not isinstance(due_at, datetime) or due_at.tzinfo is None:
            raise ValueError("due_at must be an aware datetime")
        value = due_at.astimezone(timezone.utc).isoformat()
        current = task.internal_data.get("event_value")
        if isinstance(current, dict):
            current = dict(current)
            current["next"] = value
            task.internal_data["event_value"] = current
        else:
            task.internal_data["event_value"] = value
        task.internal_data.pop("event_fired", None)

    def boundary_timers(self, task_id: str) -> tuple[WaitingTimer, ...]:
        """The WAITING boundary timers guarding a task (for a multi-instance task, those of
        its activity): what a deadline extension of that task moves."""
        task = self._get_task(task_id)
        return tuple(
            timer for timer in self.engine._boundary_timers(task)
            if self._get_task(timer.task_id).has_state(TaskState.WAITING)
        )

    def outcome(self) -> Outcome:
        """The workflow as it is now, as the Outcome of a step that ran nothing (e.g.
        after :meth:`reschedule_timer`), for the application to write its projection."""
        ready = {r.task_id for r in self.ready_tasks()}
        return self.engine._outcome(self.workflow, ready, [])

    # -- internals -----------------------------------------------------
    def _get_task(self, task_id: str):
        try:
            return self.workflow.get_task_from_id(UUID(str(task_id)))
        except (ValueError, TaskNotFoundException):
            raise TaskNotFound(task_id) from None

    def _run_user_task(self, task, data: Mapping[str, Any], steps: list) -> None:
        task.set_data(**data)
        task.run()
        _record(steps, task)
        self._engine_steps(steps)

    def _engine_steps(self, steps: list) -> None:
        self.workflow.do_engine_steps(did_complete_task=lambda t: _record(steps, t))

    def _act(self, at: datetime, action: Callable[[list], None]) -> Outcome:
        before = {str(t.id) for t in self.workflow.get_tasks(state=TaskState.READY, manual=True)}
        steps: list[CompletedStep] = []
        with clock.case_clock(at):
            try:
                action(steps)
            except EngineError:
                raise
            except SpiffWorkflowException as exc:
                # The workflow object is now half-advanced; the caller must discard it
                # (the application rolls back and never saves it).
                raise ProcessFailed(_describe_failure(exc)) from exc
            except (ValueError, TypeError, KeyError, NameError) as exc:
                raise ProcessFailed(f"{type(exc).__name__}: {exc}") from exc
            self.engine._stamp_ready(self.workflow, at)
        return self.engine._outcome(self.workflow, before, steps)


class Engine:
    """Starts, loads and saves case workflows. One instance per process is enough."""

    def __init__(self, roles: RoleCatalogue, script_engine: Any | None = None, calendar: Any | None = None):
        # ``calendar`` (a workflows.calendar.BusinessCalendar) feeds the script helpers
        # add_working_hours/deadline/...; None: the default. Unused with a given script_engine.
        self.roles = roles
        self.calendar = calendar
        self.script_engine = script_engine or make_script_engine(calendar)
        self.serializer = WorkflowSerializer()

    def start(self, definition: ProcessDefinition, data: Mapping[str, Any], *, at: datetime) -> tuple[CaseRun, Outcome]:
        _check_keys(data)
        workflow = BpmnWorkflow(
            definition.spec, dict(definition.subprocess_specs), script_engine=self.script_engine
        )
        run = CaseRun(definition, workflow, self)

        def act(steps: list) -> None:
            start_task = workflow.task_tree
            start_task.data.update(dict(data))
            # Seed every task that already exists (the tree root's children) with the start data.
            for task in workflow.get_tasks(state=TaskState.READY):
                task.data.update(dict(data))
            run._engine_steps(steps)

        outcome = run._act(at, act)
        return run, outcome

    def load(self, definition: ProcessDefinition, saved: SavedState) -> CaseRun:
        workflow = self.serializer.load(saved, definition.spec, definition.subprocess_specs)
        # Deserialization does not restore the script engine.
        workflow.script_engine = self.script_engine
        return CaseRun(definition, workflow, self)

    def dump(self, run: CaseRun) -> SavedState:
        return self.serializer.dump(run.workflow)

    def plain(self, value: Any) -> Any:
        return self.serializer.plain(value)

    # -- description helpers (used by CaseRun) --------------------------
    def _describe_ready(self, task) -> ReadyTask:
        spec = task.task_spec
        properties = spec.extensions.get("properties", {}) if hasattr(spec, "extensions") else {}
        due_at = warn_at = None
        timers = list(self._boundary_timers(task))
        for timer in timers:
            if timer.interrupting:
                due_at = timer.due_at if due_at is None else min(due_at, timer.due_at)
            else:
                warn_at = timer.due_at if warn_at is None else min(warn_at, timer.due_at)
        declared = None if timers else self._declared_limit(task, properties)
        if declared is not None:
            due_at, warn_at = declared
        return ReadyTask(
            task_id=str(task.id),
            spec_id=spec.bpmn_id or spec.name,
            name=spec.bpmn_name or spec.bpmn_id or spec.name,
            lane=spec.lane,
            role=self.roles.resolve(spec.lane),
            form=properties.get(FORM_PROPERTY),
            instructions=(spec.extensions.get("instructionsForEndUser") if hasattr(spec, "extensions") else None) or None,
            due_at=due_at,
            warn_at=warn_at,
            process_id=task.workflow.spec.name,
            limit_declared=declared is not None,
        )

    def _declared_limit(self, task, properties) -> tuple[datetime, datetime] | None:
        limit = properties.get(TIME_LIMIT_PROPERTY) if properties else None
        ready_at = task.internal_data.get(READY_AT_KEY)
        if not limit or not ready_at:
            return None
        try:
            amount, unit, fraction = parse_time_limit(limit, properties.get(TIME_LIMIT_WARNING_PROPERTY))
        except ValueError:
            return None  # validation reports it at deploy time
        calendar = self._calendar()
        due = datetime.fromisoformat(calendar.deadline(amount, unit, start=ready_at)).astimezone(timezone.utc)
        warn = datetime.fromisoformat(calendar.deadline(amount, unit, start=ready_at, fraction=fraction)).astimezone(timezone.utc)
        return due, warn

    def _calendar(self):
        if self.calendar is None:
            from workflows.calendar import BusinessCalendar

            self.calendar = BusinessCalendar.default()
        return self.calendar

    def _stamp_ready(self, workflow: BpmnWorkflow, at: datetime) -> None:
        """Remember (case clock) when a task with a declared time limit became ready."""
        for task in workflow.get_tasks(state=TaskState.READY, manual=True):
            properties = task.task_spec.extensions.get("properties", {}) if hasattr(task.task_spec, "extensions") else {}
            if properties.get(TIME_LIMIT_PROPERTY) and READY_AT_KEY not in task.internal_data:
                task.internal_data[READY_AT_KEY] = at.astimezone(timezone.utc).isoformat()

    def _boundary_timers(self, task) -> Iterable[WaitingTimer]:
        # A task with boundary events is a child of a BoundaryEventSplit; the events are its
        # siblings. Any other parent (e.g. a parallel split) has no boundary timers for it.
        # An instance of a multi-instance task inherits the boundary timers of the whole activity.
        guarded = task.parent if task.parent is not None and _is_multi_instance(task.parent) else task
        parent = guarded.parent
        if parent is None or not _is_boundary_split(parent):
            return ()
        # A warning (non-interrupting) that has fired still dates the task's yellow light.
        return [
            timer
            for timer in (_as_timer(sibling, fired_warning=True) for sibling in parent.children if sibling is not guarded)
            if timer is not None
        ]

    def _waiting_timers(self, workflow: BpmnWorkflow) -> list[WaitingTimer]:
        timers = []
        for task in workflow.get_tasks(state=TaskState.WAITING):
            timer = _as_timer(task)
            if timer is not None:
                timers.append(timer)
        return sorted(timers, key=lambda t: (t.due_at, t.spec_id))

    def _case_data(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        """The case's data: every key any branch has written, latest write winning.

        SpiffWorkflow keeps a data copy per task, so a branch that has ended (a
        warning path, say) holds keys no current task has. Merging completed and
        current tasks in the order they changed state keeps them visible."""
        relevant = TaskState.COMPLETED | TaskState.READY | TaskState.WAITING | TaskState.STARTED
        tasks = sorted(workflow.get_tasks(state=relevant), key=lambda t: t.last_state_change)
        merged: dict[str, Any] = dict(workflow.data)
        for task in tasks:
            merged.update(task.data)
        return merged

    def _check_form(self, definition: ProcessDefinition, task: ReadyTask, data: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise FormInvalid({"_form": ["form data must be an object"]})
        _check_keys(data)
        if task.form is None:
            return dict(data)
        schema = definition.forms.get(task.form)
        if schema is None:
            raise FormInvalid({"_form": [f"form {task.form!r} is not part of this process version"]})
        errors = validate_form_data(schema, data)
        if errors:
            raise FormInvalid(errors)
        return dict(data)

    def _outcome(self, workflow: BpmnWorkflow, before: set[str], steps: list[CompletedStep]) -> Outcome:
        ready_tasks = workflow.get_tasks(state=TaskState.READY, manual=True)
        ready = tuple(self._describe_ready(t) for t in ready_tasks)
        now_ids = [r.task_id for r in ready]
        return Outcome(
            completed=tuple(steps),
            ready=ready,
            newly_ready=tuple(i for i in now_ids if i not in before),
            no_longer_ready=tuple(sorted(before - set(now_ids))),
            timers=tuple(self._waiting_timers(workflow)),
            ended=workflow.is_completed(),
            end_events=tuple(s.spec_id for s in steps if s.kind == "EndEvent"),
            data=self._case_data(workflow),
            thrown=tuple(
                ThrownMessage(event.event_definition.name, event.payload, dict(event.correlations or {}))
                for event in workflow.get_events()
            ),
        )


def _record(steps: list, task) -> None:
    # Only BPMN elements: SpiffWorkflow's internal tasks (Start, *.EndJoin, End,
    # BoundaryEventSplit…) have no bpmn_id and mean nothing to people or auditors.
    if task.task_spec.bpmn_id is not None:
        steps.append(_step(task))


def _step(task) -> CompletedStep:
    spec = task.task_spec
    kind = "EndEvent" if isinstance(spec, EndEvent) else getattr(spec, "bpmn_type", None) or type(spec).__name__
    kind = kind.split(":")[-1] if isinstance(kind, str) else type(spec).__name__
    return CompletedStep(str(task.id), spec.bpmn_id or spec.name, spec.bpmn_name or spec.bpmn_id or spec.name, kind)


def _as_timer(task, *, fired_warning: bool = False) -> WaitingTimer | None:
    """A WAITING timer task as a WaitingTimer; with ``fired_warning`` also a
    non-interrupting timer that has already fired (COMPLETED), keeping its due time."""
    spec = task.task_spec
    definition = getattr(spec, "event_definition", None)
    if not isinstance(definition, TimerEventDefinition):
        return None
    fired = fired_warning and not getattr(spec, "cancel_activity", True) and task.has_state(TaskState.COMPLETED)
    if not (task.has_state(TaskState.WAITING) or fired):
        return None
    value = task.internal_data.get("event_value")
    if isinstance(value, dict):  # cycle timers keep {"cycles": n, "next": iso, "duration": s}
        value = value.get("next")
    if not value:
        return None
    due_at = datetime.fromisoformat(value)
    if due_at.tzinfo is None:
        due_at = due_at.replace(tzinfo=timezone.utc)
    cancel_activity = getattr(spec, "cancel_activity", True)
    parent = task.parent
    attached = None
    if parent is not None and _is_boundary_split(parent):
        attached = next((str(c.id) for c in parent.children if _as_timer_spec(c) is None and c is not task), None)
    return WaitingTimer(
        task_id=str(task.id),
        spec_id=spec.bpmn_id or spec.name,
        name=spec.bpmn_name or spec.bpmn_id or spec.name,
        due_at=due_at.astimezone(timezone.utc),
        interrupting=bool(cancel_activity),
        attached_to=attached,
    )


def _is_multi_instance(task) -> bool:
    return type(task.task_spec).__name__ in ("ParallelMultiInstanceTask", "SequentialMultiInstanceTask")


def _is_boundary_split(task) -> bool:
    return type(task.task_spec).__name__ == "BoundaryEventSplit"


def _as_timer_spec(task):
    return getattr(task.task_spec, "event_definition", None)


def _check_keys(data: Mapping[str, Any]) -> None:
    if not isinstance(data, Mapping):
        raise FormInvalid({"_form": ["data must be an object"]})
    bad = {}
    for key in data:
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            bad[str(key)] = ["field names must be identifiers that do not start with '_'"]
        elif key in HELPER_NAMES:
            bad[key] = [f"'{key}' is reserved for a script helper"]
    if bad:
        raise FormInvalid(bad)


def _describe_failure(exc: SpiffWorkflowException) -> str:
    task_spec = getattr(exc, "task_spec", None)
    where = ""
    if task_spec is not None:
        where = f" at {getattr(task_spec, 'bpmn_id', None) or task_spec.name}"
    return f"the process could not continue{where}: {exc}"
