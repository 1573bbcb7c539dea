"""Driving a shipped process on a fake clock through the real service path, and
checking that a timer fires exactly once, exactly when it is due.

Every action takes an explicit time (``at=``): cases start, tasks are completed by a
user holding the task's role, and timers fire through ``app.jobs.fire_due_timers(at=...)``
as the sweeper would. Expected times are written out by the tests themselves (from
domain.md's limits and the State Council's 2026 holiday schedule), never computed with
the business calendar under test.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from lxml import etree

from tests.conftest import ROLE_USERS

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "bpmn"
CST = ZoneInfo("Asia/Shanghai")
SECOND = timedelta(seconds=1)
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


def cst(text: str) -> datetime:
    """'2026-04-03 15:30' (Beijing time) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=CST)


@dataclass(frozen=True)
class BpmnTimer:
    process: str
    id: str
    name: str
    kind: str                 # boundaryEvent / intermediateCatchEvent / startEvent
    attached_to: str | None
    interrupting: bool


def bpmn_timers(process: str) -> dict[str, BpmnTimer]:
    """Every timer event in the process folder's BPMN files, read from the XML itself."""
    found: dict[str, BpmnTimer] = {}
    for path in sorted((LIBRARY / process).glob("*.bpmn")):
        tree = etree.parse(str(path))
        for event in tree.iter(f"{BPMN}boundaryEvent", f"{BPMN}intermediateCatchEvent", f"{BPMN}startEvent"):
            if event.find(f"{BPMN}timerEventDefinition") is None:
                continue
            found[event.get("id")] = BpmnTimer(
                process=process,
                id=event.get("id"),
                name=event.get("name") or "",
                kind=etree.QName(event).localname,
                attached_to=event.get("attachedToRef"),
                interrupting=event.get("cancelActivity", "true").lower() != "false",
            )
    return found


class CaseDriver:
    """One case of a shipped process, acted on through the services at chosen times."""

    def __init__(self, app, process: str, data: Mapping[str, Any], *, at: datetime,
                 title: str = "时限测试", grid: str = "S-C1-G1", user: str = "member"):
        from app.cases import service as cases
        from app.db import commit, db
        from app.people import service as people
        from app.runtime import runtime

        self.app, self.process = app, process
        self.fired: list[str] = []  # BPMN ids of timers checked by expect_fires, in order
        with app.app_context():
            case = cases.start_case(runtime(), process_id=process, title=title, grid_code=grid, data=dict(data),
                                    actor=people.user_by_username(user), at=at)
            commit()
            self.id, self.reference = case.id, case.reference
            db.session.remove()

    # -- acting -----------------------------------------------------------------------
    def complete(self, task: str, data: Mapping[str, Any], *, at: datetime, user: str | None = None,
                 which: int | None = None) -> None:
        """Complete the open work item of ``task`` (``which``: the n-th of several, by id)."""
        from app.db import commit, db
        from app.people import service as people
        from app.runtime import runtime
        from app.work import service as work

        with self.app.app_context():
            item = self._open_item(task, which)
            actor = people.user_by_username(user or ROLE_USERS[item.role])
            work.complete(runtime(), item.id, actor, dict(data), at=at)
            commit()
            db.session.remove()

    def message(self, name: str, payload: Mapping[str, Any], *, at: datetime) -> None:
        from app.cases import service as cases
        from app.db import commit, db
        from app.runtime import runtime

        with self.app.app_context():
            cases.deliver_message(runtime(), self.reference, name=name, payload=dict(payload), correlations={},
                                  actor=None, at=at)
            commit()
            db.session.remove()

    def fire(self, at: datetime) -> int:
        """What the sweeper does at ``at``: returns how many cases changed."""
        from app.db import db
        from app.jobs import fire_due_timers

        with self.app.app_context():
            changed = fire_due_timers(at=at)
            db.session.remove()
        return changed

    # -- reading ----------------------------------------------------------------------
    def _read(self, query: Callable) -> Any:
        from app.db import db

        with self.app.app_context():
            try:
                return query(db)
            finally:
                db.session.remove()

    def _open_item(self, task: str, which: int | None = None):
        from sqlalchemy import select

        from app.db import db
        from app.work.models import OPEN_STATES, WorkItem

        items = list(db.session.scalars(select(WorkItem).where(
            WorkItem.case_id == self.id, WorkItem.spec_id == task, WorkItem.state.in_(OPEN_STATES)
        ).order_by(WorkItem.id)))
        if which is not None:
            return items[which]
        assert len(items) == 1, (task, self.open_tasks())
        return items[0]

    def open_tasks(self) -> list[str]:
        return sorted(i["task"] for i in self.items())

    def items(self, task: str | None = None, *, open_only: bool = True) -> list[dict]:
        from sqlalchemy import select

        from app.work.models import OPEN_STATES, WorkItem

        def query(db):
            statement = select(WorkItem).where(WorkItem.case_id == self.id).order_by(WorkItem.id)
            if open_only:
                statement = statement.where(WorkItem.state.in_(OPEN_STATES))
            if task is not None:
                statement = statement.where(WorkItem.spec_id == task)
            return [
                {"id": i.id, "task": i.spec_id, "role": i.role, "state": i.state, "due_at": i.due_at,
                 "warn_at": i.warn_at, "closed_at": i.closed_at}
                for i in db.session.scalars(statement)
            ]

        return self._read(query)

    def item(self, task: str) -> dict:
        items = self.items(task)
        assert len(items) == 1, (task, self.open_tasks())
        return items[0]

    def light(self, task: str, at: datetime) -> str:
        """The queue light (green / yellow / red) of the open item of ``task`` at ``at``."""
        from app.work.schemas import light_of

        return self._read(lambda db: light_of(self._open_item(task), at))

    def timers(self, state: str | None = "waiting") -> list[dict]:
        from sqlalchemy import select

        from app.cases.models import Timer

        def query(db):
            statement = select(Timer).where(Timer.case_id == self.id).order_by(Timer.id)
            if state is not None:
                statement = statement.where(Timer.state == state)
            return [
                {"task_id": t.task_id, "timer": t.spec_id, "due_at": t.due_at, "state": t.state,
                 "fired_at": t.fired_at, "interrupting": t.interrupting}
                for t in db.session.scalars(statement)
            ]

        return self._read(query)

    def waiting(self) -> dict[str, datetime]:
        """BPMN timer id -> due time of every waiting timer."""
        rows = self.timers("waiting")
        assert len({r["timer"] for r in rows}) == len(rows), rows  # one waiting timer per BPMN timer
        return {r["timer"]: r["due_at"] for r in rows}

    def events(self) -> list[dict]:
        from sqlalchemy import select

        from app.cases.models import CaseEvent

        def query(db):
            return [
                {"seq": e.seq, "kind": e.kind, "at": e.at, "payload": e.payload}
                for e in db.session.scalars(
                    select(CaseEvent).where(CaseEvent.case_id == self.id).order_by(CaseEvent.seq))
            ]

        return self._read(query)

    def case(self) -> dict:
        from app.cases.models import Case

        def query(db):
            case = db.session.get(Case, self.id)
            return {"status": case.status, "end_event": case.end_event, "data": dict(case.data or {})}

        return self._read(query)

    @property
    def data(self) -> dict:
        return self.case()["data"]

    # -- the check ----------------------------------------------------------------------
    def expect_fires(self, timer: str, due: datetime, *, later: datetime | None = None) -> dict:
        """``timer`` is waiting with due time ``due``; a sweep one second before does
        nothing; the first sweep after it fires exactly that timer, once, in one
        ``timer_fired`` event carrying the due time; sweeping again (at ``later``, default
        one second before the next waiting timer, or a day later) changes nothing.
        Returns the timer_fired event."""
        waiting = self.waiting()
        assert timer in waiting, (timer, waiting)
        assert waiting[timer] == due, (timer, waiting[timer].astimezone(CST), due)
        row = next(r for r in self.timers("waiting") if r["timer"] == timer)
        before = self.events()

        assert self.fire(due - SECOND) == 0, f"{timer} fired before {due}"
        assert self.events() == before
        assert self.waiting() == waiting

        at = due + SECOND
        assert self.fire(at) == 1, f"{timer} did not fire at {at}"
        new = self.events()[len(before):]
        assert [e["kind"] for e in new] == ["timer_fired"], new
        event = new[0]
        assert event["at"] == at
        assert [(t["timer"], t["task_id"], datetime.fromisoformat(t["due_at"])) for t in event["payload"]["timers"]] \
            == [(timer, row["task_id"], due)], event["payload"]
        fired_row = next(r for r in self.timers(None) if r["task_id"] == row["task_id"])
        assert (fired_row["state"], fired_row["fired_at"]) == ("fired", at), fired_row
        assert timer not in self.waiting() or self.waiting()[timer] != due

        after = self.events()
        if later is None:
            remaining = self.waiting()
            later = max(at, min(remaining.values()) - SECOND) if remaining else at + timedelta(days=1)
        for moment in (at, later):
            assert self.fire(moment) == 0, f"a second sweep at {moment} changed the case after {timer}"
        assert self.events() == after
        self.fired.append(f"{self.process}:{timer}")
        return event

    def assert_no_duplicate_firings(self) -> None:
        """Over the whole case: every timer task fired in at most one event, and the timers
        table agrees with the events."""
        assert self.fired, "no timer was checked"
        fired_in_events = [t["task_id"] for e in self.events() if e["kind"] == "timer_fired"
                           for t in e["payload"]["timers"]]
        assert len(fired_in_events) == len(set(fired_in_events)), fired_in_events
        fired_rows = sorted(r["task_id"] for r in self.timers("fired"))
        assert sorted(fired_in_events) == fired_rows


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


# -- an independent business calendar (2026 only), for cross-checking ------------------------
WORKING_PERIODS = ((time(9), time(12)), (time(13, 30), time(18)))  # domain: 7.5 working hours a day


@lru_cache(maxsize=None)
def is_workday_2026(day: date) -> bool:
    """The State Council's 2026 schedule as the chinesecalendar package publishes it."""
    import chinese_calendar

    assert day.year == 2026, day
    return chinese_calendar.is_workday(day)


def after_working_minutes(start: datetime, minutes: int) -> datetime:
    """The first instant at which ``minutes`` of working time have passed since ``start``:
    a plain walk over 2026's days and the working periods, sharing no code with
    workflows.calendar."""
    left, day = minutes, start.astimezone(CST).date()
    if left == 0:
        return start
    while True:
        if is_workday_2026(day):
            for begin, end in WORKING_PERIODS:
                a = max(datetime.combine(day, begin, tzinfo=CST), start)
                b = datetime.combine(day, end, tzinfo=CST)
                available = int((b - a).total_seconds() // 60) if b > a else 0
                if left <= available:
                    return a + timedelta(minutes=left)
                left -= available
        day += timedelta(days=1)


def working_minutes_between(a: datetime, b: datetime) -> int:
    """Working minutes in [a, b] (a <= b), 2026 only, by the same plain walk."""
    total, day = 0, a.astimezone(CST).date()
    while day <= b.astimezone(CST).date():
        if is_workday_2026(day):
            for begin, end in WORKING_PERIODS:
                lo = max(datetime.combine(day, begin, tzinfo=CST), a)
                hi = min(datetime.combine(day, end, tzinfo=CST), b)
                if hi > lo:
                    total += int((hi - lo).total_seconds() // 60)
        day += timedelta(days=1)
    return total
