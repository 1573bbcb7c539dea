"""Verifying a case's history: the hash chain, then a deterministic replay.

A case's history is a list of events, each hash-chained to the one before. Given
the events and the process version(s) the case ran on, :func:`verify` checks:

1. **the chain** — every event's hash is recomputed over its canonical content
   (the same bytes the application hashed when it wrote the event); each event
   must name the previous event's hash, seq numbers run 1, 2, 3… without gaps,
   and the last event is the chain head stored on the case. A changed field,
   a deleted event or two events swapped all break it at a named event.
2. **the replay** — the workflow is rebuilt from the pinned version and the
   events alone, each applied through the same engine facade the application
   uses (start / complete / fire_timers / deliver_message, and the SLA and
   migration hooks when those events occur) with the case clock set to the
   event's time, and saved and reloaded after every step as a request does.
   After every event what the replay did is compared with what the event
   recorded (its ``effects``: completed elements, ready tasks, waiting timers,
   ended, thrown messages, and the case data the step changed); at the end the
   replayed workflow is compared structurally with the stored state (task
   specs, states, data, in tree order) and with the stored case data.

Task ids are uuid4 in SpiffWorkflow, so a replay cannot produce the recorded
ids. Recorded ids are mapped to replayed ones deterministically: events list the
ready tasks' (and waiting timers') ids next to their element ids, in the
engine's tree order, so the n-th ready ``review`` task of an event is the n-th
ready ``review`` task of the replayed step. Older events without the id lists
fall back to the only (or first unmapped) ready task of that element.

Pure: nothing here knows about Flask, SQL or Redis; callers pass plain records
and parsed definitions, so the same code verifies a live database (read only)
and an exported bundle offline.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from SpiffWorkflow.util.task import TaskState

from workflows import clock
from workflows.definitions import ProcessDefinition
from workflows.engine import CaseRun, Engine, Outcome
from workflows.errors import EngineError
from workflows.serialization import SavedState

GENESIS_HASH = "0" * 64

# Events that move the workflow; every other kind (claims, notes, attachments…) is
# checked by the hash chain only.
WORKFLOW_KINDS = ("case_started", "task_completed", "timer_fired", "message_received",
                  "extension_approved", "case_migrated")

# Problem codes, in the order a verification looks for them.
HASH_MISMATCH = "hash_mismatch"
BROKEN_LINK = "broken_link"
MISSING_EVENT = "missing_event"
HEAD_MISMATCH = "head_mismatch"
UNKNOWN_VERSION = "unknown_version"
REPLAY_DIVERGED = "replay_diverged"
REPLAY_FAILED = "replay_failed"
STATE_MISMATCH = "state_mismatch"


# -- the canonical content (must match app/cases/history.py byte for byte) ------------
def canonical_content(
    *, reference: str, seq: int, kind: str, at: datetime, actor: str | None, role: str | None,
    payload: Mapping[str, Any], prev_hash: str,
) -> bytes:
    document = {
        "case": reference,
        "seq": seq,
        "kind": kind,
        "at": at.isoformat(),
        "actor": actor,
        "role": role,
        "payload": payload,
        "prev": prev_hash,
    }
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def normalise(value: Any) -> Any:
    """``value`` as it comes back from a JSON column (tuples → lists, keys → str)."""
    return json.loads(json.dumps(value, ensure_ascii=False))


def data_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any], *, normalised: bool = False) -> dict[str, Any]:
    """What a step did to the case data (both JSON-safe): keys set (new or changed) and removed.
    ``normalised``: both are already as a JSON column gives them back."""
    if not normalised:
        before = normalise(dict(before or {}))
        after = normalise(dict(after))
    before = before or {}
    changed = {key: value for key, value in after.items() if key not in before or before[key] != value}
    removed = sorted(key for key in before if key not in after)
    return {"set": changed, "removed": removed}


# -- records in, verdicts out -----------------------------------------------------------
@dataclass(frozen=True)
class RecordedEvent:
    seq: int
    kind: str
    at: datetime
    actor: str | None
    role: str | None
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "RecordedEvent":
        at = datetime.fromisoformat(document["at"])
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        return cls(int(document["seq"]), str(document["kind"]), at, document.get("actor"), document.get("role"),
                   document.get("payload") or {}, str(document.get("prev_hash") or ""), str(document.get("hash") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": self.at.isoformat(), "actor": self.actor,
                "role": self.role, "payload": self.payload, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True)
class CaseRecord:
    """Everything stored about one case that verification reads."""

    reference: str
    events: tuple[RecordedEvent, ...]          # in stored seq order
    head_seq: int | None = None                # chain head kept on the case row
    head_hash: str | None = None
    state: str | None = None                   # stored workflow state (JSON, without spec)
    serializer_version: str | None = None
    data: Mapping[str, Any] | None = None      # stored case data
    ended: bool | None = None                  # stored status is "completed"


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    seq: int | None = None
    kind: str | None = None
    expected: Any = None
    got: Any = None

    def __str__(self) -> str:
        where = f"event {self.seq} ({self.kind})" if self.seq is not None else "final state"
        if self.code == MISSING_EVENT and self.kind is None:
            where = f"event {self.seq}"
        return f"{where}: {self.code.replace('_', ' ')}: {self.message}"


@dataclass(frozen=True)
class Snapshot:
    """The workflow as the replay left it after one event."""

    seq: int
    kind: str
    ready: tuple[str, ...]                     # element ids of READY user tasks
    waiting: tuple[str, ...]                   # element ids of WAITING timers
    completed: Mapping[str, int]               # element id -> times completed so far
    data: Mapping[str, Any]                    # case data (JSON-safe)
    ended: bool


@dataclass(frozen=True)
class Verdict:
    reference: str
    problem: Problem | None
    events: int
    replayed: int                              # workflow events applied
    snapshots: tuple[Snapshot, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        if self.ok:
            return f"OK {self.reference}: {self.events} events, chain intact, replay matches ({self.replayed} workflow steps)"
        return f"FAIL {self.reference}: {self.problem}"


# -- the chain ----------------------------------------------------------------------------
def event_hash(reference: str, event: RecordedEvent) -> str:
    return hashlib.sha256(
        canonical_content(reference=reference, seq=event.seq, kind=event.kind, at=event.at, actor=event.actor,
                          role=event.role, payload=event.payload, prev_hash=event.prev_hash)
    ).hexdigest()


def check_chain(record: CaseRecord) -> Problem | None:
    """The first event whose hash, link or position is wrong; then the chain head."""
    previous_hash, expected_seq = GENESIS_HASH, 1
    for event in record.events:
        if event.seq != expected_seq:
            if event.seq > expected_seq:
                missing = f"{expected_seq}" if event.seq == expected_seq + 1 else f"{expected_seq}–{event.seq - 1}"
                return Problem(MISSING_EVENT, f"event {missing} is missing: seq jumps from {expected_seq - 1} to {event.seq}",
                               seq=expected_seq, expected=expected_seq, got=event.seq)
            return Problem(BROKEN_LINK, f"seq {event.seq} appears where {expected_seq} belongs (events out of order)",
                           seq=event.seq, kind=event.kind, expected=expected_seq, got=event.seq)
        recomputed = event_hash(record.reference, event)
        if recomputed != event.hash:
            return Problem(HASH_MISMATCH, f"the stored content does not match its hash (stored {event.hash[:12]}…, "
                           f"recomputed {recomputed[:12]}…): a field of this event was changed",
                           seq=event.seq, kind=event.kind, expected=event.hash, got=recomputed)
        if event.prev_hash != previous_hash:
            return Problem(BROKEN_LINK, f"it names {event.prev_hash[:12]}… as the previous hash, but event "
                           f"{event.seq - 1} hashes to {previous_hash[:12]}… (an event before it was changed, removed or moved)",
                           seq=event.seq, kind=event.kind, expected=previous_hash, got=event.prev_hash)
        previous_hash, expected_seq = event.hash, expected_seq + 1
    last = record.events[-1] if record.events else None
    if record.head_seq is not None and (last is None or record.head_seq != last.seq):
        have = last.seq if last else 0
        return Problem(MISSING_EVENT, f"the case's chain head is event {record.head_seq} but the last stored event is "
                       f"{have}: events after {have} were removed", seq=have + 1, expected=record.head_seq, got=have)
    if record.head_hash is not None and last is not None and record.head_hash != last.hash:
        return Problem(HEAD_MISMATCH, f"the case's chain head hash {record.head_hash[:12]}… is not the hash of the last "
                       f"event ({last.hash[:12]}…)", seq=last.seq, kind=last.kind, expected=record.head_hash, got=last.hash)
    return None


# -- the replay ------------------------------------------------------------------------------
class _Diverged(Exception):
    def __init__(self, code: str, message: str, expected: Any = None, got: Any = None):
        super().__init__(message)
        self.code, self.message, self.expected, self.got = code, message, expected, got


DefinitionSource = Callable[[str, str], ProcessDefinition | None]  # (process_id, content_hash) -> definition


class Replayer:
    """Re-executes one case's events. ``definitions`` finds a process version's parsed
    definition by (process id, content hash); None when it is not available."""

    def __init__(self, engine: Engine, definitions: DefinitionSource, *, roundtrip: bool = True,
                 keep_snapshots: bool = False):
        self.engine = engine
        self.definitions = definitions
        self.roundtrip = roundtrip
        self.keep_snapshots = keep_snapshots

    def verify(self, record: CaseRecord) -> Verdict:
        problem = check_chain(record)
        if problem is not None:
            return Verdict(record.reference, problem, len(record.events), 0)
        try:
            return self.replay(record)
        except Exception as exc:  # noqa: BLE001 - one unreadable case is a failed verification, not a crash
            return Verdict(record.reference, Problem(REPLAY_FAILED, f"{type(exc).__name__}: {exc}"), len(record.events), 0)

    def replay(self, record: CaseRecord) -> Verdict:
        state = _ReplayState()
        snapshots: list[Snapshot] = []
        for event in record.events:
            try:
                applied = self._apply(state, event)
            except _Diverged as exc:
                problem = Problem(exc.code, exc.message, seq=event.seq, kind=event.kind, expected=exc.expected, got=exc.got)
                return Verdict(record.reference, problem, len(record.events), state.replayed, tuple(snapshots))
            if applied:
                state.replayed += 1
            if self.keep_snapshots:
                snapshots.append(state.snapshot(event))
        problem = self._compare_final(record, state)
        return Verdict(record.reference, problem, len(record.events), state.replayed, tuple(snapshots))

    # -- one event -------------------------------------------------------------------------
    def _apply(self, state: "_ReplayState", event: RecordedEvent) -> bool:
        kind, payload = event.kind, event.payload
        if kind not in WORKFLOW_KINDS:
            return False
        if kind == "case_started":
            if state.run is not None:
                raise _Diverged(REPLAY_DIVERGED, "a second case_started event")
            definition = self._definition(payload.get("process_id"), payload.get("content_hash"), payload.get("process_version"))
            state.definition = definition
            outcome = self._engine(lambda: self.engine.start(definition, dict(payload.get("data") or {}), at=event.at))
            state.run, outcome = outcome
        elif state.run is None:
            raise _Diverged(REPLAY_DIVERGED, f"{kind} before the case started")
        elif kind == "task_completed":
            task_id = state.replayed_task(payload.get("task_id"), payload.get("task"))
            outcome = self._engine(lambda: state.run.complete(task_id, dict(payload.get("data") or {}), at=event.at,
                                                               role=event.role))
        elif kind == "timer_fired":
            outcome = self._engine(lambda: state.run.fire_timers(at=event.at))
        elif kind == "message_received":
            outcome = self._engine(lambda: state.run.deliver_message(
                payload.get("name"), dict(payload.get("payload") or {}), dict(payload.get("correlations") or {}),
                at=event.at))
        elif kind == "extension_approved":
            outcome = self._extension(state, event)
        else:  # case_migrated
            outcome = self._migration(state, event)
        if outcome is not None:
            self._compare(state, event, outcome)
        elif state.run is not None:
            state.data = normalise(self.engine.plain(dict(state.run.data)))
        if self.roundtrip:
            saved = self.engine.dump(state.run)
            state.run = self.engine.load(state.definition, saved)
        return True

    def _extension(self, state: "_ReplayState", event: RecordedEvent) -> Outcome | None:
        """A deadline extension moved the task's deadline timer to ``new_due_at`` and its
        warning timer (if any) to ``new_warn_at`` (app/work/extensions.py)."""
        reschedule = getattr(state.run, "reschedule_timer", None)
        if reschedule is None:
            raise _Diverged(REPLAY_FAILED, "this engine cannot reschedule timers (CaseRun.reschedule_timer is missing)")
        payload = event.payload
        new_due, new_warn = _when(payload.get("new_due_at")), _when(payload.get("new_warn_at"))
        waiting = {t.task_id: t for t in state.run.waiting_timers()}
        for recorded in payload.get("timer_task_ids") or ():
            task_id = state.replayed_timer(recorded)
            timer = waiting.get(task_id)
            if timer is None:
                raise _Diverged(REPLAY_DIVERGED, f"timer {recorded} is not waiting in the replay")
            due = new_due if timer.interrupting or new_warn is None else new_warn
            if due is None:
                raise _Diverged(REPLAY_FAILED, "the event records no new due time")
            with clock.case_clock(event.at):
                self._engine(lambda: reschedule(task_id, due))
        return self._current_outcome(state)

    def _migration(self, state: "_ReplayState", event: RecordedEvent) -> Outcome | None:
        try:
            from workflows import migration  # optional until the process library ships it
        except ImportError:
            raise _Diverged(REPLAY_FAILED, "this engine cannot migrate cases (workflows.migration is missing)") from None
        payload = event.payload
        target = self._definition(payload.get("process_id") or state.definition.process_id, payload.get("content_hash"),
                                  payload.get("to_version"))
        result = self._engine(lambda: migration.migrate_run(self.engine, state.run, target, at=event.at))
        run = getattr(result, "run", result)
        if not isinstance(run, CaseRun):
            problems = "; ".join(str(p) for p in getattr(result, "problems", ()))
            raise _Diverged(REPLAY_DIVERGED, f"the recorded migration to version {payload.get('to_version')} is not "
                            f"possible in the replay: {problems or 'refused'}")
        state.run, state.definition = run, target
        return self._current_outcome(state)

    @staticmethod
    def _current_outcome(state: "_ReplayState") -> Outcome | None:
        current = getattr(state.run, "outcome", None)
        return current() if current is not None else None

    def _definition(self, process_id: Any, content_hash: Any, version: Any) -> ProcessDefinition:
        definition = self.definitions(str(process_id), str(content_hash)) if process_id and content_hash else None
        if definition is None:
            raise _Diverged(UNKNOWN_VERSION, f"process {process_id} version {version} (content {str(content_hash)[:12]}…) "
                            "is not available: its files are missing or do not hash to the recorded content hash")
        return definition

    @staticmethod
    def _engine(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except EngineError as exc:
            raise _Diverged(REPLAY_DIVERGED, f"the engine refused the recorded command: {type(exc).__name__}: {exc}") from None
        except _Diverged:
            raise
        except Exception as exc:  # noqa: BLE001 - anything else the engine raises: the step cannot be replayed
            raise _Diverged(REPLAY_FAILED, f"{type(exc).__name__}: {exc}") from None

    # -- comparing with the record ----------------------------------------------------------
    def _compare(self, state: "_ReplayState", event: RecordedEvent, outcome: Outcome) -> None:
        data = normalise(self.engine.plain(dict(outcome.data)))
        changes = data_changes(state.data, data, normalised=True)
        state.data = data
        ready = sorted(outcome.ready, key=lambda t: t.spec_id)
        timers = sorted(outcome.timers, key=lambda t: t.spec_id)
        for step in outcome.completed:
            state.completed[step.spec_id] += 1
        state.ready = tuple(t.spec_id for t in ready)
        state.waiting = tuple(t.spec_id for t in timers)
        state.ended = outcome.ended
        effects = event.payload.get("effects")
        if not isinstance(effects, Mapping):
            return  # recorded without effects: the chain vouches for it, nothing to compare
        got = {
            "completed": [s.spec_id for s in outcome.completed],
            "ready": list(state.ready),
            "ended": outcome.ended,
            "thrown": [m.name for m in outcome.thrown],
            "timers": list(state.waiting),
        }
        for key in ("completed", "ready", "ended", "thrown", "timers"):
            if key in effects and effects[key] != got[key]:
                raise _Diverged(REPLAY_DIVERGED, f"{key}: recorded {_show(effects[key])}, replay gave {_show(got[key])}",
                                expected=effects[key], got=got[key])
        recorded_changes = effects.get("data")
        if isinstance(recorded_changes, Mapping):
            for what in ("set", "removed"):
                want, have = recorded_changes.get(what), changes[what]
                if want is not None and want != have:
                    keys = _differing_keys(want, have) if what == "set" else sorted(set(want) ^ set(have))
                    raise _Diverged(REPLAY_DIVERGED, f"case data {what}: {', '.join(keys)} recorded "
                                    f"{_show(_pick(want, keys))}, replay gave {_show(_pick(have, keys))}",
                                    expected=want, got=have)
        state.map_ids(effects.get("ready_ids"), [t.task_id for t in ready], state.ready, effects.get("ready"))
        state.map_ids(effects.get("timer_ids"), [t.task_id for t in timers], state.waiting, effects.get("timers"))

    def _compare_final(self, record: CaseRecord, state: "_ReplayState") -> Problem | None:
        if state.run is None:
            if record.state:
                return Problem(STATE_MISMATCH, "the case has a stored workflow state but no case_started event")
            return None
        if record.ended is not None and record.ended != state.run.ended:
            return Problem(STATE_MISMATCH, f"the case is stored as {'closed' if record.ended else 'open'}, "
                           f"the replay {'ended' if state.run.ended else 'did not end'}",
                           expected=record.ended, got=state.run.ended)
        if record.data is not None:
            stored = normalise(dict(record.data))
            if stored != state.data:
                keys = _differing_keys(stored, state.data) + sorted(set(state.data) - set(stored))
                return Problem(STATE_MISMATCH, f"stored case data differs from the replay in {', '.join(keys)}: stored "
                               f"{_show(_pick(stored, keys))}, replay {_show(_pick(state.data, keys))}",
                               expected=stored, got=state.data)
        if record.state is None:
            return None
        try:
            stored_run = self.engine.load(state.definition, SavedState(record.state, record.serializer_version or ""))
            difference = compare_workflows(stored_run.workflow, state.run.workflow, self.engine)
        except Exception as exc:  # noqa: BLE001 - StateFormatError, or a state whose tree makes no sense
            return Problem(STATE_MISMATCH, f"the stored workflow state cannot be read: {type(exc).__name__}: {exc}")
        if difference is not None:
            return Problem(STATE_MISMATCH, f"the stored workflow state differs from the replay: {difference}")
        return None


class _ReplayState:
    def __init__(self) -> None:
        self.run: CaseRun | None = None
        self.definition: ProcessDefinition | None = None
        self.ids: dict[str, str] = {}            # recorded task id -> replayed task id
        self.data: dict[str, Any] = {}
        self.completed: Counter[str] = Counter()
        self.ready: tuple[str, ...] = ()
        self.waiting: tuple[str, ...] = ()
        self.ended = False
        self.replayed = 0

    def snapshot(self, event: RecordedEvent) -> Snapshot:
        return Snapshot(event.seq, event.kind, self.ready, self.waiting, dict(self.completed), self.data, self.ended)

    def map_ids(self, recorded_ids: Any, replayed_ids: Sequence[str], specs: Sequence[str], recorded_specs: Any) -> None:
        if not isinstance(recorded_ids, list) or len(recorded_ids) != len(replayed_ids):
            return
        if recorded_specs is not None and list(recorded_specs) != list(specs):
            return
        for recorded, replayed in zip(recorded_ids, replayed_ids):
            self.ids[str(recorded)] = replayed

    def replayed_task(self, recorded_id: Any, spec_id: Any) -> str:
        mapped = self.ids.get(str(recorded_id))
        if mapped is not None:
            return mapped
        # Events recorded before ready ids were: the only (or first unmapped) ready task of that element.
        taken = set(self.ids.values())
        candidates = [t.task_id for t in self.run.ready_tasks() if t.spec_id == spec_id]
        free = [c for c in candidates if c not in taken] or candidates
        if not free:
            raise _Diverged(REPLAY_DIVERGED, f"task {spec_id} is not ready in the replay (ready: "
                            f"{_show(sorted(t.spec_id for t in self.run.ready_tasks()))})",
                            expected=spec_id, got=sorted(t.spec_id for t in self.run.ready_tasks()))
        self.ids[str(recorded_id)] = free[0]
        return free[0]

    def replayed_timer(self, recorded_id: Any) -> str:
        mapped = self.ids.get(str(recorded_id))
        if mapped is None:
            raise _Diverged(REPLAY_DIVERGED, f"timer task {recorded_id} was never recorded as waiting")
        return mapped


# -- comparing two workflows -------------------------------------------------------------------
def compare_workflows(stored, replayed, engine: Engine) -> str | None:
    """The first structural difference between two workflows (tree order: element, state,
    data, internal data; subprocesses too), or None."""
    data_a, data_b = _plain(engine, stored.data), _plain(engine, replayed.data)
    if data_a != data_b:
        keys = _differing_keys(data_a, data_b) + sorted(set(data_b) - set(data_a))
        return (f"workflow data differs in {', '.join(keys)}: stored {_show(_pick(data_a, keys))}, "
                f"replay {_show(_pick(data_b, keys))}")
    pairs = [(stored.task_tree, replayed.task_tree, stored, replayed)]
    walked: list = []
    ids: dict[str, str] = {}   # stored task id -> replayed task id (same place in the tree)
    while pairs:
        a, b, wa, wb = pairs.pop()
        name_a, name_b = _element(a), _element(b)
        if name_a != name_b:
            return f"element {name_a} is stored where the replay has {name_b}"
        if a.state != b.state:
            return (f"task {name_a} is {TaskState.get_name(a.state)} in the stored state, "
                    f"{TaskState.get_name(b.state)} in the replay")
        data_a, data_b = _plain(engine, a.data), _plain(engine, b.data)
        if data_a != data_b:
            keys = _differing_keys(data_a, data_b) + sorted(set(data_b) - set(data_a))
            return (f"task {name_a} ({TaskState.get_name(a.state)}) data differs in {', '.join(keys)}: stored "
                    f"{_show(_pick(data_a, keys))}, replay {_show(_pick(data_b, keys))}")
        walked.append((a, b, name_a))
        ids[str(a.id)] = str(b.id)
        if len(a.children) != len(b.children):
            return f"task {name_a} has {len(a.children)} children stored, {len(b.children)} in the replay"
        sub_a, sub_b = _subprocess(wa, a), _subprocess(wb, b)
        if (sub_a is None) != (sub_b is None):
            return f"task {name_a}: a subprocess exists in only one of them"
        if sub_a is not None:
            pairs.append((sub_a.task_tree, sub_b.task_tree, wa, wb))
        pairs.extend(reversed(list(zip(a.children, b.children, [wa] * len(a.children), [wb] * len(b.children)))))
    # Internal data may name other tasks (a multi-instance activity's merged children): compare via the id map.
    for a, b, name in walked:
        if _translate(_plain(engine, a.internal_data), ids) != _plain(engine, b.internal_data):
            return f"task {name} ({TaskState.get_name(a.state)}) internal data differs"
    return None


def _translate(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_translate(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _translate(v, ids) for k, v in value.items()}
    return value


def _subprocess(top, task):
    root = getattr(top, "top_workflow", None) or top
    return getattr(root, "subprocesses", {}).get(task.id)


def _element(task) -> str:
    spec = task.task_spec
    return getattr(spec, "bpmn_id", None) or spec.name


def _plain(engine: Engine, value: Any) -> Any:
    return normalise(engine.plain(value))


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _Diverged(REPLAY_FAILED, f"{value!r} is not a datetime") from None


# -- messages ------------------------------------------------------------------------------
def _differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(key for key in a if key not in b or a[key] != b[key])


def _pick(values: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {key: values.get(key, "<absent>") for key in keys}


def _show(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- convenience --------------------------------------------------------------------------------
def definitions_from(definitions: Iterable[ProcessDefinition]) -> DefinitionSource:
    by_key = {(d.process_id, d.content_hash): d for d in definitions}
    return lambda process_id, content_hash: by_key.get((process_id, content_hash))
