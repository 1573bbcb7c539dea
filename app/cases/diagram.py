"""A case drawn on its process diagram: the BPMN XML of the version the case runs on,
and which elements are completed (how often), current (open user tasks) or waiting
(timers). The page draws it with bpmn-js; the same markers feed a plain list for
browsers without JavaScript."""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from lxml import etree
from sqlalchemy import select

from app.cases.models import Case, CaseEvent, Timer
from app.db import db
from app.errors import NotFound
from app.processes import service as processes
from app.processes.models import ProcessVersion
from app.work.models import OPEN_STATES, WorkItem

BPMN_MODEL = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMN_DI = "http://www.omg.org/spec/BPMN/20100524/DI"
# Element kinds worth listing in the text fallback (not lanes, flows, pools).
_LISTED = {
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "userTask", "manualTask", "task", "scriptTask", "serviceTask", "businessRuleTask", "sendTask",
    "receiveTask", "callActivity", "subProcess", "exclusiveGateway", "inclusiveGateway",
    "parallelGateway", "eventBasedGateway",
}


@dataclass(frozen=True)
class ProcessDrawing:
    """What a process version's diagram file says; versions are immutable, so it is cached."""

    filename: str
    xml: str
    names: dict[str, str]                 # element id -> name (falls back to the id)
    kinds: dict[str, str]                 # element id -> BPMN element kind (userTask, endEvent…)
    drawn: frozenset[str]                 # element ids that have a shape or edge in the diagram
    order: tuple[str, ...] = field(default=())  # listed elements in document order


@dataclass(frozen=True)
class Step:
    id: str
    name: str
    kind: str
    status: str          # completed / current / waiting
    count: int = 0


_CACHE: dict[tuple[str, str], ProcessDrawing] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 256


def drawing_of(version: ProcessVersion) -> ProcessDrawing:
    key = (version.process_id, version.content_hash)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    drawing = _read_drawing(version)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        return _CACHE.setdefault(key, drawing)


def _read_drawing(version: ProcessVersion) -> ProcessDrawing:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    for filename, content in sorted(processes.version_files(version).items()):
        if not filename.endswith(".bpmn"):
            continue
        try:
            root = etree.fromstring(content, parser)
        except etree.XMLSyntaxError:
            continue
        if not root.xpath("//b:process[@id=$pid]", namespaces={"b": BPMN_MODEL}, pid=version.process_id):
            continue
        names: dict[str, str] = {}
        kinds: dict[str, str] = {}
        order: list[str] = []
        for element in root.iter(f"{{{BPMN_MODEL}}}*"):
            element_id = element.get("id")
            if not element_id:
                continue
            kind = etree.QName(element).localname
            kinds[element_id] = kind
            names[element_id] = (element.get("name") or "").strip() or element_id
            if kind in _LISTED:
                order.append(element_id)
        drawn = frozenset(
            ref for ref in (el.get("bpmnElement") for el in root.iter(f"{{{BPMN_DI}}}*")) if ref
        )
        return ProcessDrawing(
            filename=filename, xml=content.decode("utf-8"), names=names, kinds=kinds, drawn=drawn, order=tuple(order),
        )
    raise NotFound(f"no diagram file defines process {version.process_id!r}")


def markers_of(
    case: Case, drawing: ProcessDrawing, *, payloads: Iterable[Mapping] | None = None,
    current_ids: Iterable[str] | None = None, waiting_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Completed element ids with how often, current (open tasks) and waiting (timers),
    limited to elements the diagram draws. A caller that has already read the case's
    events (all of them) or open work items may pass them in; the audit replay passes
    the events up to a point and what was current and waiting then."""
    if payloads is None:
        payloads = db.session.scalars(
            select(CaseEvent.payload).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
        )
    if current_ids is None:
        current_ids = db.session.scalars(
            select(WorkItem.spec_id).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES))
        )
    completed: Counter[str] = Counter()
    for payload in payloads:
        effects = (payload or {}).get("effects") or {}
        for spec_id in effects.get("completed") or ():
            if spec_id in drawing.drawn:
                completed[spec_id] += 1
    current = sorted({spec_id for spec_id in current_ids if spec_id in drawing.drawn})
    if waiting_ids is None:
        waiting_ids = db.session.scalars(
            select(Timer.spec_id).where(Timer.case_id == case.id, Timer.state == "waiting")
        )
    waiting = sorted({spec_id for spec_id in waiting_ids if spec_id in drawing.drawn})
    order = {element_id: index for index, element_id in enumerate(drawing.order)}
    return {
        "completed": [
            {"id": spec_id, "count": count}
            for spec_id, count in sorted(completed.items(), key=lambda kv: order.get(kv[0], len(order)))
        ],
        "current": current,
        "waiting": waiting,
    }


def diagram_of(case: Case) -> dict[str, Any]:
    drawing = drawing_of(case.process_version)
    return {
        "case": case.reference,
        "process_id": case.process_version.process_id,
        "version": case.process_version.version,
        "file": drawing.filename,
        "xml": drawing.xml,
        **markers_of(case, drawing),
    }


def steps_of(
    case: Case, *, payloads: Iterable[Mapping] | None = None, current_ids: Iterable[str] | None = None,
    waiting_ids: Iterable[str] | None = None,
) -> list[Step]:
    """The same markers as a list in diagram order, for reading without the drawing."""
    drawing = drawing_of(case.process_version)
    markers = markers_of(case, drawing, payloads=payloads, current_ids=current_ids, waiting_ids=waiting_ids)
    steps: dict[str, Step] = {}
    for entry in markers["completed"]:
        steps[entry["id"]] = _step(drawing, entry["id"], "completed", entry["count"])
    for spec_id in markers["waiting"]:
        steps[spec_id] = _step(drawing, spec_id, "waiting")
    for spec_id in markers["current"]:
        steps[spec_id] = _step(drawing, spec_id, "current", steps[spec_id].count if spec_id in steps else 0)
    order = {element_id: index for index, element_id in enumerate(drawing.order)}
    return sorted(steps.values(), key=lambda s: order.get(s.id, len(order)))


def element_name(case: Case, element_id: str | None) -> str | None:
    if not element_id:
        return None
    try:
        return drawing_of(case.process_version).names.get(element_id, element_id)
    except NotFound:
        return element_id


def _step(drawing: ProcessDrawing, spec_id: str, status: str, count: int = 0) -> Step:
    return Step(id=spec_id, name=drawing.names.get(spec_id, spec_id), kind=drawing.kinds.get(spec_id, ""),
                status=status, count=count)
