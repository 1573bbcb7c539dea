"""Branch coverage of a process definition by the paths scenarios walked.

The coverable items come from the parsed specs (the definition's spec and all its
subprocess specs, so embedded subprocesses and called processes count too):

- every outgoing sequence flow of an exclusive or inclusive gateway that has more
  than one outgoing flow, identified by (gateway id, target id); flows that lead to
  the same target are one item;
- every boundary event;
- every end event.

An item is hit when a workflow run by the engine shows it happened. The rule, read
from SpiffWorkflow 3.2.0's task tree and checked by tests/unit/test_scenarios.py:

- a gateway task that is COMPLETED keeps exactly the children for the flows it
  took: ``_run_hook`` calls ``_sync_children(chosen, FUTURE)``, which removes the
  predicted (MAYBE/LIKELY) children of every other flow. So each child of a COMPLETED
  gateway task that is not in a predicted state is a taken flow. A taken child may
  later be CANCELLED (an interrupting event, a terminate end); it still counts,
  because the gateway did choose it. A gateway that is not COMPLETED (FUTURE, LIKELY,
  WAITING, ERROR, CANCELLED) chose nothing, whatever its predicted children say.
- a boundary event or end event is hit when its task is COMPLETED (a boundary event
  whose activity finishes first is CANCELLED; one that never fired stays WAITING).

A gateway's child spec is not always the BPMN target: a target carrying boundary
events sits behind a synthetic ``<id>.BoundaryEventSplit``; that is resolved to the
activity it guards.

Nothing here knows about Flask, SQL or Redis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping
from uuid import UUID

from lxml import etree
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.event_definitions.conditional import ConditionalEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import (
    ErrorEventDefinition,
    EscalationEventDefinition,
    SignalEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.simple import CancelEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.util.task import TaskState

from workflows.definitions import NS, ProcessDefinition

_EVENT_KINDS = (
    (TimerEventDefinition, "timer"), (MessageEventDefinition, "message"), (ErrorEventDefinition, "error"),
    (EscalationEventDefinition, "escalation"), (SignalEventDefinition, "signal"),
    (ConditionalEventDefinition, "conditional"), (CancelEventDefinition, "cancel"),
    (MultipleEventDefinition, "multiple"),
)
_CONTAINERS = {f"{{{NS['bpmn']}}}{tag}" for tag in ("process", "subProcess", "transaction", "adHocSubProcess")}


@dataclass(frozen=True)
class CoverageItem:
    key: tuple[str, ...]   # ("flow", process, gateway, target) | ("boundary", process, id) | ("end", process, id)
    kind: str              # "flow", "boundary" or "end"
    process: str           # the (sub)process spec the element belongs to
    label: str             # human-readable, names first

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class CoverageReport:
    process_id: str
    name: str
    items: tuple[CoverageItem, ...]
    hit: frozenset[tuple[str, ...]]

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def hit_count(self) -> int:
        return sum(1 for item in self.items if item.key in self.hit)

    @property
    def missed(self) -> tuple[CoverageItem, ...]:
        return tuple(item for item in self.items if item.key not in self.hit)

    @property
    def percent(self) -> int:
        """Rounded down, so anything short of full coverage never shows as 100%."""
        return 100 if not self.items else self.hit_count * 100 // self.total

    @property
    def full(self) -> bool:
        return not self.missed

    def lines(self) -> list[str]:
        head = (f"coverage {self.process_id} ({self.name}): {self.hit_count}/{self.total} "
                f"branches, end and boundary events ({self.percent}%)")
        return [head, *(f"  missed: {item.label}" for item in self.missed)]


# --- coverable items ------------------------------------------------------------

def coverable_items(definition: ProcessDefinition) -> tuple[CoverageItem, ...]:
    """Every item scenarios should reach, in a stable order (top process first)."""
    flows = _sequence_flows(definition)
    items: list[CoverageItem] = []
    specs = [definition.spec, *(definition.subprocess_specs[k] for k in sorted(definition.subprocess_specs))]
    for spec in specs:
        where = "" if spec is definition.spec else f"in {_named(spec.description if _has_own_name(spec) else None, spec.name)}: "
        for task_spec in sorted(spec.task_specs.values(), key=lambda t: t.name):
            if _is_branching_gateway(task_spec):
                for target in _gateway_targets(task_spec):
                    target_id = _bpmn_id(target)
                    described = ", ".join(_describe_flow(f) for f in flows.get((spec.name, task_spec.bpmn_id, target_id), ()))
                    label = f"{where}{_named(task_spec.bpmn_name, task_spec.bpmn_id)} → {_named(_bpmn_name(target), target_id)}"
                    if described:
                        label += f" [{described}]"
                    items.append(CoverageItem(("flow", spec.name, task_spec.bpmn_id, target_id), "flow", spec.name, label))
            elif isinstance(task_spec, BoundaryEvent):
                kind = _event_kind(task_spec)
                mode = "interrupting" if task_spec.cancel_activity else "non-interrupting"
                attached = _attached_activity(task_spec)
                label = f"{where}{mode} {kind} boundary event {_named(task_spec.bpmn_name, task_spec.bpmn_id)}"
                if attached is not None:
                    label += f" on {_named(attached.bpmn_name, attached.bpmn_id)}"
                items.append(CoverageItem(("boundary", spec.name, task_spec.bpmn_id), "boundary", spec.name, label))
            elif isinstance(task_spec, EndEvent):
                label = f"{where}end event {_named(task_spec.bpmn_name, task_spec.bpmn_id)}"
                items.append(CoverageItem(("end", spec.name, task_spec.bpmn_id), "end", spec.name, label))
    order = {"flow": 0, "boundary": 1, "end": 2}
    top = definition.spec.name
    return tuple(sorted(items, key=lambda i: (i.process != top, i.process, order[i.kind], i.key)))


def _has_own_name(spec) -> bool:
    return bool(spec.description) and spec.description != spec.name


def _is_branching_gateway(task_spec) -> bool:
    return isinstance(task_spec, (ExclusiveGateway, InclusiveGateway)) and len(_gateway_targets(task_spec)) > 1


def _gateway_targets(task_spec) -> list:
    """The gateway's outputs, one per distinct BPMN target."""
    seen, targets = set(), []
    for output in task_spec.outputs:
        target_id = _bpmn_id(output)
        if target_id not in seen:
            seen.add(target_id)
            targets.append(output)
    return targets


def _resolve(task_spec):
    """The BPMN element a spec stands for: a BoundaryEventSplit stands for the activity it guards."""
    while task_spec.bpmn_id is None and isinstance(task_spec, BoundaryEventSplit):
        main = [o for o in task_spec.outputs if not isinstance(o, BoundaryEvent)]
        if len(main) != 1:
            break
        task_spec = main[0]
    return task_spec


def _bpmn_id(task_spec) -> str:
    resolved = _resolve(task_spec)
    return resolved.bpmn_id or resolved.name


def _bpmn_name(task_spec) -> str | None:
    return _resolve(task_spec).bpmn_name


def _attached_activity(task_spec):
    for parent in task_spec.inputs:
        if isinstance(parent, BoundaryEventSplit):
            resolved = _resolve(parent)
            if resolved is not parent:
                return resolved
    return None


def _event_kind(task_spec) -> str:
    definition = task_spec.event_definition
    for cls, kind in _EVENT_KINDS:
        if isinstance(definition, cls):
            return kind
    return "event"


def _named(name: str | None, identifier: str | None) -> str:
    name = (name or "").strip()
    return f"{name} ({identifier})" if name and name != identifier else str(identifier)


def _describe_flow(flow: Mapping[str, Any]) -> str:
    text = f"flow {flow['id']}"
    if flow.get("name"):
        text += f" “{flow['name']}”"
    if flow.get("default"):
        text += ", default"
    elif flow.get("condition"):
        text += f", when {flow['condition']}"
    return text


def _sequence_flows(definition: ProcessDefinition) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(container id, source id, target id) -> the sequence flows between them, from the BPMN XML.

    The parsed specs keep no sequence flow ids or names, so those come from the files."""
    flows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for name, content in definition.files.items():
        if not name.endswith(".bpmn"):
            continue
        try:
            root = etree.fromstring(content)
        except etree.XMLSyntaxError:  # the definition loaded, so this does not happen; labels are optional
            continue
        defaults = {el.get("default") for el in root.iter() if el.get("default")}
        for flow in root.iterfind(".//bpmn:sequenceFlow", NS):
            container = flow.getparent()
            while container is not None and container.tag not in _CONTAINERS:
                container = container.getparent()
            if container is None:
                continue
            condition = flow.find("bpmn:conditionExpression", NS)
            key = (container.get("id"), flow.get("sourceRef"), flow.get("targetRef"))
            flows.setdefault(key, []).append({
                "id": flow.get("id"),
                "name": (flow.get("name") or "").strip() or None,
                "default": flow.get("id") in defaults,
                "condition": " ".join((condition.text or "").split()) if condition is not None else None,
            })
    return flows


# --- hits ---------------------------------------------------------------------

def all_tasks(workflow) -> Iterator[Any]:
    """Every task of a BpmnWorkflow, subprocesses and call activities included."""
    yield from list(workflow.tasks.values())
    for subprocess in list(workflow.subprocesses.values()):
        yield from list(subprocess.tasks.values())


def task_hits(task) -> set[tuple[str, ...]]:
    """The coverage keys one task shows (see the module docstring for the rule)."""
    if not task.has_state(TaskState.COMPLETED):
        return set()
    spec = task.task_spec
    process = task.workflow.spec.name
    if isinstance(spec, BoundaryEvent):
        return {("boundary", process, spec.bpmn_id)}
    if isinstance(spec, EndEvent):
        return {("end", process, spec.bpmn_id)}
    if isinstance(spec, (ExclusiveGateway, InclusiveGateway)):
        return {
            ("flow", process, spec.bpmn_id, _bpmn_id(child.task_spec))
            for child in task.children
            if not child.has_state(TaskState.PREDICTED_MASK)
        }
    return set()


@dataclass
class CoverageCollector:
    """Accumulates hits over the operations of one or more runs."""

    hits: set[tuple[str, ...]] = field(default_factory=set)

    def observe(self, workflow, completed: Iterable[Any] = ()) -> None:
        """After an operation: the tasks it reported completed (``Outcome.completed``), and a
        scan of the whole tree (which also finds anything completed outside the callback)."""
        for step in completed:
            try:
                task = workflow.get_task_from_id(UUID(str(step.task_id)))
            except Exception:  # removed from the tree within the same operation
                task = None
            if task is not None:
                self.hits |= task_hits(task)
        for task in all_tasks(workflow):
            self.hits |= task_hits(task)


def coverage_report(definition: ProcessDefinition, hits: Iterable[tuple[str, ...]]) -> CoverageReport:
    items = coverable_items(definition)
    known = {item.key for item in items}
    return CoverageReport(definition.process_id, definition.name, items, frozenset(set(hits) & known))
