"""Moving a running case onto a newer version of its process.

Uses SpiffWorkflow 3.2's own facilities (``SpiffWorkflow.bpmn.util.diff``:
``diff_workflow`` aligns the case's tasks with the new spec, ``migrate_workflow``
swaps the specs) with the rule spiff-arena applies: a migration is **safe** only
when no task the case has already reached — completed, started, or visible to
someone now (a READY user task, a WAITING timer or message) — had its spec changed
or removed. Tasks that are only predicted (future) may change freely; that is
the point of a new version.

:func:`migrate_run` never touches the run it is given: it works on a copy
(saved and loaded again) and returns the migrated copy, already proven to save
and load on the new definition. Replay calls it with the event's recorded time
to re-apply a ``case_migrated`` event, so the result depends only on the saved
state, the new definition and ``at``.

Nothing here knows about Flask, SQL or Redis.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.util.diff import diff_workflow, migrate_workflow
from SpiffWorkflow.util.task import TaskState

from workflows import clock
from workflows.definitions import ProcessDefinition
from workflows.diffing import spec_registry
from workflows.engine import CaseRun, Engine

# States of tasks a case has reached: their spec must not have changed.
REACHED = TaskState.COMPLETED | TaskState.STARTED | TaskState.READY | TaskState.WAITING | TaskState.ERROR


@dataclass(frozen=True)
class MigrationProblem:
    element_id: str       # BPMN id (or SpiffWorkflow's spec name for a helper spec)
    name: str | None      # BPMN name in the case's current version
    state: str            # COMPLETED / STARTED / READY / WAITING / ERROR
    reason: str           # "changed: name, timer" / "removed" / …
    kind: str = "other"   # changed / removed / other (for pages that word it themselves)
    attributes: tuple[str, ...] = ()   # what changed, when kind == "changed"

    def __str__(self) -> str:
        label = f"{self.element_id} ({self.name})" if self.name and self.name != self.element_id else self.element_id
        return f"{label} [{self.state.lower()}]: {self.reason}"


@dataclass(frozen=True)
class MigrationResult:
    safe: bool
    problems: tuple[MigrationProblem, ...]
    changed_tasks: int            # tasks of this case whose spec changed (any state)
    repredicted_tasks: int        # predicted tasks dropped and predicted again from the new spec
    run: CaseRun | None           # the migrated run (None when unsafe)
    from_hash: str
    to_hash: str

    def summary(self) -> dict[str, Any]:
        """JSON-safe: what the safety check found (stored in the case_migrated event)."""
        return {
            "safe": self.safe,
            "problems": [str(p) for p in self.problems],
            "changed_tasks": self.changed_tasks,
            "repredicted_tasks": self.repredicted_tasks,
            "from_hash": self.from_hash,
            "to_hash": self.to_hash,
        }


def migrate_run(engine: Engine, run: CaseRun, new_definition: ProcessDefinition, *,
                at: datetime | None = None) -> MigrationResult:
    """Check whether ``run`` can move to ``new_definition`` and, when safe, return the moved copy.

    ``at``: the case clock for anything re-evaluated (defaults to the wall clock;
    replay passes the event's time). Deadlines of timers that are already waiting
    and the data of ready tasks are kept exactly as they were."""
    at = at or clock.utcnow()
    from_hash, to_hash = run.definition.content_hash, new_definition.content_hash
    if run.definition.process_id != new_definition.process_id:
        problem = MigrationProblem(new_definition.process_id, None, "-",
                                   f"the new definition is process {new_definition.process_id!r}, "
                                   f"not {run.definition.process_id!r}")
        return MigrationResult(False, (problem,), 0, 0, None, from_hash, to_hash)

    copy = engine.load(run.definition, engine.dump(run))
    workflow = copy.workflow
    registry = spec_registry()
    new_subspecs = dict(new_definition.subprocess_specs)
    top_diff, sub_diffs = diff_workflow(registry, workflow, new_definition.spec, new_subspecs)

    problems: list[MigrationProblem] = []
    changed_count = 0
    diffs = [(workflow, top_diff, new_definition.spec)]
    for sp_id, diff in sub_diffs.items():
        sub = workflow.subprocesses[sp_id]
        if diff is None:
            problems.append(MigrationProblem(sub.spec.name, None, "STARTED",
                                             "this subprocess is running and the new version no longer has it"))
            continue
        diffs.append((sub, diff, new_subspecs[sub.spec.name]))
    for _, diff, _ in diffs:
        changed_count += len(diff.changed)
        for task in diff.removed:
            if task.has_state(REACHED):
                problems.append(_problem(task, "removed in the new version", "removed"))
        for task in diff.changed:
            if task.has_state(REACHED):
                changed = _changed_attributes(registry, task, diff)
                problems.append(_problem(task, "changed: " + ", ".join(changed), "changed", tuple(changed)))
    if problems:
        return MigrationResult(False, tuple(_unique(problems)), changed_count, 0, None, from_hash, to_hash)

    # Keep what the case already has: the data of ready tasks and the due times of
    # waiting timers (migrate_workflow resets both and would re-compute deadlines from now).
    kept = {task.id: (dict(task.internal_data), task.data)
            for task in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING)}
    removed = 0
    with clock.case_clock(at):
        for target, diff, spec in diffs:
            removed += len(migrate_workflow(diff, target, spec))
        workflow.subprocess_specs = new_subspecs
        for task in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING):
            if task.id in kept:
                internal, data = kept[task.id]
                if internal:
                    task.internal_data = internal
                task.data = data
    # Prove the result saves and loads on the new version, as every later request will.
    try:
        moved = engine.load(new_definition, engine.dump(CaseRun(new_definition, workflow, engine)))
    except Exception as exc:  # noqa: BLE001 - any failure here means "not safe"
        problem = MigrationProblem(new_definition.process_id, None, "-",
                                   f"the case cannot be saved on the new version: {type(exc).__name__}: {exc}")
        return MigrationResult(False, (problem,), changed_count, removed, None, from_hash, to_hash)
    return MigrationResult(True, (), changed_count, removed, moved, from_hash, to_hash)


def _problem(task, reason: str, kind: str, attributes: tuple[str, ...] = ()) -> MigrationProblem:
    spec = task.task_spec
    return MigrationProblem(getattr(spec, "bpmn_id", None) or spec.name, getattr(spec, "bpmn_name", None),
                            TaskState.get_name(task.state), reason, kind, attributes)


def _changed_attributes(registry, task, diff) -> list[str]:
    new_spec = diff.alignment.get(task)
    if new_spec is None:
        return ["structure"]
    s1, s2 = registry.convert(task.task_spec), registry.convert(new_spec)
    labels = {"bpmn_name": "name", "event_definition": "event/timer", "cond_task_specs": "conditions",
              "outputs": "outgoing flows", "inputs": "incoming flows", "typename": "type",
              "prescript": "script", "postscript": "script", "extensions": "properties (form, decision, script…)"}
    keys = [k for k in s1 if s1.get(k) != s2.get(k) and k not in ("description", "name")]
    if not keys and s1.get("typename") != s2.get("typename"):
        keys = ["typename"]
    return sorted({labels.get(k, k) for k in keys}) or ["attributes"]


def _unique(problems: list[MigrationProblem]) -> list[MigrationProblem]:
    seen, out = set(), []
    for p in problems:
        key = (p.element_id, p.state, p.reason)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
