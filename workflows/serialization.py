"""Saving and restoring workflow instances without their process spec.

Process versions are immutable and stored once, so an instance's saved state
leaves out the spec (about 60% of a small instance's JSON) and gets the
definition's already-parsed spec objects back on load. That skips rebuilding
the spec from dicts on every request. The format is SpiffWorkflow's own
``to_dict`` output minus ``spec``/``subprocess_specs``; the serializer version
is stored beside it so a future upgrade can migrate explicitly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Mapping
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SPIFF_SERIALIZER_VERSION
from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG

SERIALIZER_VERSION = SPIFF_SERIALIZER_VERSION


class StateFormatError(Exception):
    """Stored state cannot be restored by this version of the engine."""


@dataclass(frozen=True)
class SavedState:
    state: str               # JSON text
    serializer_version: str


def _build_serializer() -> BpmnWorkflowSerializer:
    registry = BpmnWorkflowSerializer.configure(DEFAULT_CONFIG)
    # Form data can carry dates and decimals; SpiffWorkflow raises TypeError on them otherwise.
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
    return BpmnWorkflowSerializer(registry)


class WorkflowSerializer:
    def __init__(self) -> None:
        self._serializer = _build_serializer()
        self._registry = self._serializer.registry
        # register() wraps each converter's bound from_dict in a partial; we need the converter.
        restore_partial = self._registry.convert_from_dict[self._registry.typenames[BpmnWorkflow]]
        self._workflow_converter = restore_partial.args[0].__self__

    def dump(self, workflow: BpmnWorkflow) -> SavedState:
        data = self._serializer.to_dict(workflow)
        data.pop("spec", None)
        data.pop("subprocess_specs", None)
        return SavedState(json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=self._json_default), SERIALIZER_VERSION)

    def _json_default(self, value: Any) -> Any:
        # Task data is left unconverted by to_dict (SpiffWorkflow converts it only inside
        # serialize_json's encoder), so registered types (datetime, date, Decimal,
        # timedelta, UUID) are converted here; restore() turns them back on load.
        if type(value) in self._registry.typenames:
            return self._registry.convert(value)
        if isinstance(value, (set, frozenset)):
            return sorted(value, key=repr)  # sets come back as lists, in a stable order
        raise TypeError(f"task data value of type {type(value).__name__} cannot be saved")

    def load(self, saved: SavedState, spec: Any, subprocess_specs: Mapping[str, Any]) -> BpmnWorkflow:
        if saved.serializer_version != SERIALIZER_VERSION:
            raise StateFormatError(
                f"state was saved with serializer {saved.serializer_version}; "
                f"this engine reads {SERIALIZER_VERSION} (migrate the case first)"
            )
        try:
            data = json.loads(saved.state)
        except ValueError as exc:
            raise StateFormatError(f"stored state is not valid JSON: {exc}") from exc
        try:
            return self._restore(data, spec, dict(subprocess_specs))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise StateFormatError(f"stored state is not a saved workflow: {type(exc).__name__}: {exc}") from exc

    def _restore(self, data: dict, spec: Any, subprocess_specs: dict) -> BpmnWorkflow:
        # Mirrors BpmnWorkflowConverter.from_dict (SpiffWorkflow 3.2.0, pinned) but reuses
        # parsed spec objects instead of restoring them from dicts.
        converter = self._workflow_converter
        workflow = BpmnWorkflow(spec, subprocess_specs, deserializing=True)
        workflow.tasks = converter.mapping_from_dict(data["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(data["root"]))
        converter.set_default_attributes(workflow, data)
        converter.subprocesses_from_dict(data["subprocesses"], workflow)
        workflow.bpmn_events = self._registry.restore(data.pop("bpmn_events", []))
        return workflow

    def plain(self, value: Any) -> Any:
        """Task data converted to JSON-safe values (datetimes etc. as typed dicts)."""
        return self._registry.convert(value)
