"""What changed between two versions of a process: elements added, removed, changed.

Built on SpiffWorkflow's own :class:`SpecDiff` (the alignment its migration uses),
over the top-level process and every (called or embedded) subprocess. Only BPMN
elements are reported (SpiffWorkflow's internal helper specs — Start, joins,
boundary-event splits — mean nothing to a process owner); each change names the
aspects people recognise: name, type, lane, timer, condition, form, decision,
script, instructions, flows.

Nothing here knows about Flask, SQL or Redis.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.util.diff import SpecDiff
from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG

from workflows.definitions import ProcessDefinition

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
_MAX_SHOWN = 160  # characters of a before/after value shown


@dataclass(frozen=True)
class AspectChange:
    aspect: str          # name, type, lane, timer, condition, form, decision, script, instructions, flows, …
    before: str | None
    after: str | None


@dataclass(frozen=True)
class ElementChange:
    element_id: str      # BPMN id
    name: str | None     # BPMN name (of the new version when it has one)
    kind: str            # BPMN type, e.g. UserTask, BoundaryEvent
    status: str          # added / removed / changed
    process_id: str      # the (sub)process holding it
    aspects: tuple[AspectChange, ...] = ()

    @property
    def aspect_names(self) -> tuple[str, ...]:
        return tuple(a.aspect for a in self.aspects)


@dataclass(frozen=True)
class DefinitionDiff:
    changes: tuple[ElementChange, ...] = field(default_factory=tuple)

    @property
    def added(self) -> tuple[ElementChange, ...]:
        return tuple(c for c in self.changes if c.status == ADDED)

    @property
    def removed(self) -> tuple[ElementChange, ...]:
        return tuple(c for c in self.changes if c.status == REMOVED)

    @property
    def changed(self) -> tuple[ElementChange, ...]:
        return tuple(c for c in self.changes if c.status == CHANGED)

    @property
    def empty(self) -> bool:
        return not self.changes

    def summary(self) -> dict[str, list[str]]:
        return {status: sorted(c.element_id for c in self.changes if c.status == status)
                for status in (ADDED, REMOVED, CHANGED)}


@functools.lru_cache(maxsize=1)
def spec_registry():
    """The serializer registry SpiffWorkflow compares task specs with."""
    return BpmnWorkflowSerializer.configure(DEFAULT_CONFIG)


def diff_definitions(old: ProcessDefinition, new: ProcessDefinition) -> DefinitionDiff:
    """Every BPMN element added, removed or changed from ``old`` to ``new``."""
    registry = spec_registry()
    changes: list[ElementChange] = []
    old_specs = {old.spec.name: old.spec, **dict(old.subprocess_specs)}
    new_specs = {new.spec.name: new.spec, **dict(new.subprocess_specs)}
    for name in sorted(set(old_specs) | set(new_specs)):
        before, after = old_specs.get(name), new_specs.get(name)
        if before is None:
            changes.extend(_element(ts, ADDED, name) for ts in after.task_specs.values() if _is_element(ts))
        elif after is None:
            changes.extend(_element(ts, REMOVED, name) for ts in before.task_specs.values() if _is_element(ts))
        else:
            changes.extend(_spec_changes(registry, before, after, name))
    order = {ADDED: 0, REMOVED: 1, CHANGED: 2}
    return DefinitionDiff(tuple(sorted(changes, key=lambda c: (c.process_id, order[c.status], c.element_id))))


def _spec_changes(registry, before, after, process_id: str) -> list[ElementChange]:
    diff = SpecDiff(registry, before, after)
    out: list[ElementChange] = []
    for ts in diff.added:
        if _is_element(ts):
            out.append(_element(ts, ADDED, process_id))
    for ts in diff.removed:
        if _is_element(ts):
            out.append(_element(ts, REMOVED, process_id))
    # Specs SpecDiff never reached (not connected to the start) are compared by id.
    reached = {ts.name for ts in diff.alignment}
    for name, ts in before.task_specs.items():
        if name not in reached and _is_element(ts):
            if name not in after.task_specs:
                out.append(_element(ts, REMOVED, process_id))
            else:
                keys = _changed_keys(registry, ts, after.task_specs[name])
                if keys:
                    out.append(_changed(registry, ts, after.task_specs[name], keys, process_id))
    for ts, keys in diff.changed.items():
        new_ts = diff.alignment.get(ts)
        if new_ts is None:
            continue
        if not _is_element(ts):
            # A helper spec that changed is reported on the element it belongs to
            # (e.g. "grid_handle.BoundaryEventSplit" → grid_handle: boundary events).
            owner = ts.name.split(".")[0]
            if owner in after.task_specs and _is_element(after.task_specs[owner]) and owner in before.task_specs:
                out.append(ElementChange(owner, _name(after.task_specs[owner]), _kind(after.task_specs[owner]),
                                         CHANGED, process_id, (AspectChange("boundary events", None, None),)))
            continue
        out.append(_changed(registry, ts, new_ts, keys, process_id))
    merged: dict[tuple[str, str], ElementChange] = {}
    for change in out:
        key = (change.status, change.element_id)
        if key in merged and change.status == CHANGED:
            seen = {a.aspect for a in merged[key].aspects}
            extra = tuple(a for a in change.aspects if a.aspect not in seen)
            merged[key] = ElementChange(change.element_id, change.name, change.kind, CHANGED, process_id,
                                        merged[key].aspects + extra)
        else:
            merged.setdefault(key, change)
    return list(merged.values())


def _changed_keys(registry, a, b) -> list[str]:
    s1, s2 = registry.convert(a), registry.convert(b)
    if s1.get("typename") != s2.get("typename"):
        return ["typename"]
    return [key for key, value in s1.items() if s2.get(key) != value]


def _changed(registry, old_ts, new_ts, keys, process_id) -> ElementChange:
    s1, s2 = registry.convert(old_ts), registry.convert(new_ts)
    aspects: dict[str, AspectChange] = {}
    if "typename" in keys:
        aspects["type"] = AspectChange("type", s1.get("typename"), s2.get("typename"))
        keys = [k for k in s1 if s1.get(k) != s2.get(k) and k != "typename"]
    for key in keys:
        if key == "extensions":
            for sub in sorted(set(s1.get("extensions") or {}) | set(s2.get("extensions") or {})):
                v1, v2 = (s1.get("extensions") or {}).get(sub), (s2.get("extensions") or {}).get(sub)
                if v1 == v2:
                    continue
                if sub == "properties":
                    for prop in sorted(set(v1 or {}) | set(v2 or {})):
                        p1, p2 = (v1 or {}).get(prop), (v2 or {}).get(prop)
                        if p1 != p2:
                            label = "form" if prop == "formJsonSchemaFilename" else f"property {prop}"
                            aspects[label] = AspectChange(label, _show(p1), _show(p2))
                else:
                    label = _EXTENSION_ASPECTS.get(sub, sub)
                    aspects[label] = AspectChange(label, _show(v1), _show(v2))
            continue
        label = _aspect(key, s1.get(key), s2.get(key))
        if label is None:
            continue
        before, after = _value(key, s1.get(key)), _value(key, s2.get(key))
        if label in aspects and aspects[label].before is not None:
            continue
        aspects[label] = AspectChange(label, before, after)
    return ElementChange(new_ts.bpmn_id or new_ts.name, _name(new_ts), _kind(new_ts), CHANGED, process_id,
                         tuple(aspects.values()))


_EXTENSION_ASPECTS = {
    "calledDecisionId": "decision",
    "instructionsForEndUser": "instructions",
    "preScript": "script",
    "postScript": "script",
}
_KEY_ASPECTS = {
    "bpmn_name": "name",
    "lane": "lane",
    "prescript": "script",
    "postscript": "script",
    "script": "script",
    "cond_task_specs": "condition",
    "default_task_spec": "flows",
    "inputs": "flows",
    "outputs": "flows",
    "documentation": "documentation",
    "cancel_activity": "interrupting",
    "decision_table": "decision",
}
_IGNORED = {"description", "name", "lookahead", "bpmn_id"}


def _aspect(key: str, before: Any, after: Any) -> str | None:
    if key in _IGNORED:
        return None
    if key == "event_definition":
        typename = (after or before or {}).get("typename", "") if isinstance(after or before, Mapping) else ""
        return "timer" if "Time" in typename or "Cycle" in typename or "Duration" in typename else "event"
    return _KEY_ASPECTS.get(key, key)


def _value(key: str, value: Any) -> str | None:
    if key == "event_definition" and isinstance(value, Mapping):
        return _show(value.get("expression", {k: v for k, v in value.items() if k not in ("description", "name")}))
    if key == "cond_task_specs" and isinstance(value, list):
        return _show("; ".join(f"{c.get('condition')} → {c.get('task_spec')}" for c in value))
    if key in ("inputs", "outputs") and isinstance(value, list):
        return _show(", ".join(value))
    return _show(value)


def _show(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _is_element(ts) -> bool:
    return getattr(ts, "bpmn_id", None) is not None


def _name(ts) -> str | None:
    return getattr(ts, "bpmn_name", None)


def _kind(ts) -> str:
    kind = getattr(ts, "bpmn_type", None) or type(ts).__name__
    return kind.split(":")[-1] if isinstance(kind, str) else type(ts).__name__


def _element(ts, status: str, process_id: str) -> ElementChange:
    return ElementChange(ts.bpmn_id or ts.name, _name(ts), _kind(ts), status, process_id)
