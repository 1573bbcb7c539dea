"""workflows/replay.py without a database: the chain checks and the replay of a run recorded
here the way the application records it (events with effects), including divergences."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.grid_quick_data import CLOSE, HANDLE, REGISTER, REINSPECT, REVIEW_SELF
from workflows.calendar import BusinessCalendar
from workflows.definitions import load_folder
from workflows.engine import Engine
from workflows.replay import (
    GENESIS_HASH, CaseRecord, RecordedEvent, Replayer, canonical_content, check_chain, data_changes,
    definitions_from, event_hash, normalise,
)
from workflows.roles import RoleCatalogue

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def setup():
    roles = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")
    engine = Engine(roles, calendar=BusinessCalendar.from_file(ROOT / "bpmn" / "calendar.json"))
    result = load_folder(ROOT / "bpmn" / "grid_quick", roles)
    (definition,) = [d for d in result.definitions if d.process_id == "grid_quick"]
    return engine, definition


class Recorder:
    """Records a run as app/cases/service.py does (effects, data changes, the chain)."""

    def __init__(self, engine, reference="SJ-2026-000001"):
        self.engine, self.reference, self.events, self.data = engine, reference, [], {}

    def add(self, kind, payload, outcome, at, actor="someone", role=None):
        if outcome is not None:
            after = normalise(self.engine.plain(dict(outcome.data)))
            ready = sorted(outcome.ready, key=lambda t: t.spec_id)
            timers = sorted(outcome.timers, key=lambda t: t.spec_id)
            payload = {**payload, "effects": {
                "completed": [s.spec_id for s in outcome.completed], "ready": [t.spec_id for t in ready],
                "ended": outcome.ended, "thrown": [m.name for m in outcome.thrown],
                "ready_ids": [t.task_id for t in ready], "timers": [t.spec_id for t in timers],
                "timer_ids": [t.task_id for t in timers], "data": data_changes(self.data, after)}}
            self.data = after
        payload = normalise(payload)
        prev = self.events[-1].hash if self.events else GENESIS_HASH
        event = RecordedEvent(len(self.events) + 1, kind, at, actor, role, payload, prev, "")
        self.events.append(dataclasses.replace(event, hash=event_hash(self.reference, event)))

    def record(self, run, **overrides):
        saved = self.engine.dump(run)
        values = dict(reference=self.reference, events=tuple(self.events), head_seq=len(self.events),
                      head_hash=self.events[-1].hash, state=saved.state, serializer_version=saved.serializer_version,
                      data=self.data, ended=run.ended)
        values.update(overrides)
        return CaseRecord(**values)


def play(engine, definition, steps=(("register", "grid_member", REGISTER), ("review", "community_staff", REVIEW_SELF),
                                    ("community_handle", "community_staff", HANDLE), ("reinspect", "grid_member", REINSPECT),
                                    ("close", "duty_chief", CLOSE))):
    rec = Recorder(engine)
    at = T0
    run, outcome = engine.start(definition, {"source": "网格巡查"}, at=at)
    rec.add("case_started", {"process_id": definition.process_id, "process_version": 1,
                             "content_hash": definition.content_hash, "data": {"source": "网格巡查"}}, outcome, at)
    for spec, role, data in steps:
        at += timedelta(minutes=10)
        (task,) = [t for t in run.ready_tasks() if t.spec_id == spec]
        rec.add("task_claimed", {"task_id": task.task_id, "task": spec}, None, at, role=role)
        outcome = run.complete(task.task_id, data, at=at, role=role)
        rec.add("task_completed", {"task_id": task.task_id, "task": spec, "data": data}, outcome, at, role=role)
        run = engine.load(definition, engine.dump(run))
    return rec, run


def replayer(engine, definition):
    return Replayer(engine, definitions_from([definition]), keep_snapshots=True)


def test_the_hashed_content_of_an_event_is_pinned():
    """Stored chains must keep verifying: the canonical form (sorted keys, compact separators,
    UTF-8 without escapes, UTC ISO time) is fixed; this digest changes only if that form does."""
    import hashlib

    from app.cases.history import canonical_content as app_canonical

    args = dict(reference="SJ-1", seq=3, kind="task_completed", at=datetime(2026, 3, 2, 1, 30, tzinfo=timezone.utc),
                actor="a", role="r", payload={"b": [1, "二"], "a": None}, prev_hash=GENESIS_HASH)
    content = canonical_content(**args)
    assert content.decode("utf-8") == (
        '{"actor":"a","at":"2026-03-02T01:30:00+00:00","case":"SJ-1","kind":"task_completed",'
        '"payload":{"a":null,"b":[1,"二"]},"prev":"' + "0" * 64 + '","role":"r","seq":3}'
    )
    assert hashlib.sha256(content).hexdigest() == "dbea4cd6ca254ebad4355736e886ef489a087ed34419add46d9cc29e791aa203"
    assert app_canonical is canonical_content  # the application hashes with the same function


def test_a_recorded_run_verifies_with_snapshots(setup):
    engine, definition = setup
    rec, run = play(engine, definition)
    verdict = replayer(engine, definition).verify(rec.record(run))
    assert verdict.ok, verdict.line()
    assert verdict.events == 11 and verdict.replayed == 6
    assert [s.ready for s in verdict.snapshots][:3] == [("register",), ("register",), ("review",)]
    assert verdict.snapshots[-1].ended and verdict.snapshots[-1].completed["close"] == 1
    assert verdict.line().startswith("OK SJ-2026-000001: 11 events")


def test_chain_problems_are_named(setup):
    engine, definition = setup
    rec, run = play(engine, definition)
    record = rec.record(run)
    events = list(record.events)

    changed = events.copy()
    changed[3] = dataclasses.replace(changed[3], actor="mallory")
    problem = check_chain(dataclasses.replace(record, events=tuple(changed)))
    assert (problem.code, problem.seq, problem.kind) == ("hash_mismatch", 4, "task_claimed")

    removed = events[:4] + events[5:]
    problem = check_chain(dataclasses.replace(record, events=tuple(removed)))
    assert (problem.code, problem.seq) == ("missing_event", 5)

    swapped = events.copy()
    swapped[2], swapped[3] = (dataclasses.replace(events[3], seq=3), dataclasses.replace(events[2], seq=4))
    problem = check_chain(dataclasses.replace(record, events=tuple(swapped)))
    assert (problem.code, problem.seq) == ("hash_mismatch", 3)

    truncated = dataclasses.replace(record, events=tuple(events[:-1]))
    assert check_chain(truncated).code == "missing_event"

    relinked = events.copy()
    relinked[6] = dataclasses.replace(relinked[6], prev_hash="f" * 64)
    relinked[6] = dataclasses.replace(relinked[6], hash=event_hash(record.reference, relinked[6]))
    problem = check_chain(dataclasses.replace(record, events=tuple(relinked), head_hash=None))
    assert (problem.code, problem.seq) == ("broken_link", 7)


def _rechain(record, events):
    prev, out = GENESIS_HASH, []
    for e in events:
        e = dataclasses.replace(e, prev_hash=prev)
        e = dataclasses.replace(e, hash=event_hash(record.reference, e))
        out.append(e)
        prev = e.hash
    return dataclasses.replace(record, events=tuple(out), head_hash=prev)


def test_a_recorded_effect_that_the_replay_does_not_produce(setup):
    engine, definition = setup
    rec, run = play(engine, definition)
    record = rec.record(run)
    events = list(record.events)
    effects = dict(events[2].payload["effects"], ready=["close"])
    events[2] = dataclasses.replace(events[2], payload={**events[2].payload, "effects": effects})
    verdict = replayer(engine, definition).verify(_rechain(record, events))
    assert (verdict.problem.code, verdict.problem.seq) == ("replay_diverged", 3)
    assert 'ready: recorded ["close"], replay gave ["review"]' in verdict.problem.message


def test_recorded_data_changes_are_compared(setup):
    engine, definition = setup
    rec, run = play(engine, definition)
    record = rec.record(run)
    events = list(record.events)
    effects = dict(events[2].payload["effects"])
    effects["data"] = {"set": {**effects["data"]["set"], "verified": False}, "removed": []}
    events[2] = dataclasses.replace(events[2], payload={**events[2].payload, "effects": effects})
    verdict = replayer(engine, definition).verify(_rechain(record, events))
    assert verdict.problem.code == "replay_diverged" and "case data set: verified" in verdict.problem.message


def test_unknown_version_and_a_command_the_engine_refuses(setup):
    engine, definition = setup
    rec, run = play(engine, definition)
    record = rec.record(run)
    verdict = Replayer(engine, lambda pid, digest: None).verify(record)
    assert (verdict.problem.code, verdict.problem.seq) == ("unknown_version", 1)

    events = list(record.events)
    bad = dict(events[2].payload, data={"no_such_field": 1})
    events[2] = dataclasses.replace(events[2], payload=bad)
    verdict = replayer(engine, definition).verify(_rechain(record, events))
    assert (verdict.problem.code, verdict.problem.seq) == ("replay_diverged", 3)
    assert "refused the recorded command" in verdict.problem.message


def test_events_without_ids_fall_back_to_the_element(setup):
    """Histories written before events carried ready ids still replay."""
    engine, definition = setup
    rec, run = play(engine, definition)
    record = rec.record(run)
    events = []
    for e in record.events:
        payload = dict(e.payload)
        if "effects" in payload:
            payload["effects"] = {k: v for k, v in payload["effects"].items()
                                  if k in ("completed", "ready", "ended", "thrown")}
        events.append(dataclasses.replace(e, payload=payload))
    verdict = replayer(engine, definition).verify(_rechain(record, events))
    assert verdict.ok, verdict.line()


def test_unreadable_stored_state(setup):
    engine, definition = setup
    rec, run = play(engine, definition)
    verdict = replayer(engine, definition).verify(rec.record(run, state='{"tasks": broken'))
    assert verdict.problem.code == "state_mismatch" and "cannot be read" in verdict.problem.message
    verdict = replayer(engine, definition).verify(rec.record(run, state='{"tasks": {}}'))
    assert verdict.problem.code == "state_mismatch"
