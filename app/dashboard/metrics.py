"""Governance metrics (domain.md §8), computed from the facts folded out of the event log.

Every metric is one declarative :class:`Metric`: a numerator and a denominator, each a named
*counter* — a conditional count over ``dashboard_case_facts`` for the chosen period — and the
published wording of its formula and period rule (the definitions page renders this list).
Counters are ``COUNT(*) FILTER (WHERE …)`` over one table with the period as bound parameters:
one statement, built once, reads only the cases with a milestone in the period (indexed), one
more counts the overdue backlog, and the same statement grouped by grid path or department
gives the rankings.

Period rules (all periods are [start, end) in Asia/Shanghai):
- a case counts where its *milestone* falls: reported at, intake decided at, handled at,
  closed at, first red light at…;
- "should be closed" (应结案) = closed in the period + shelved (挂账) in the period + cases whose
  deadline passed (first red light) in the period and still open at its end — so a case due
  in the period and still open is in the denominator and not in the numerator;
- "on time" = the milestone came before any deadline timer fired (an approved extension moves
  the deadline, so it is not late).
"""
from __future__ import annotations

import calendar as _calendar
import math
from functools import lru_cache
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, bindparam, case, func, or_

from app.dashboard.facts import LEVELS, SATISFIED
from app.dashboard.models import CaseFacts as F
from app.errors import InvalidInput

LOCAL = ZoneInfo("Asia/Shanghai")


# -- periods ------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    kind: str        # month / quarter / custom
    start: date      # first day
    end: date        # day after the last day

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, datetime.min.time(), tzinfo=LOCAL)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, datetime.min.time(), tzinfo=LOCAL)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def key(self) -> str:
        if self.kind == "month":
            return f"{self.start:%Y-%m}"
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.isoformat()}..{(self.end - timedelta(days=1)).isoformat()}"

    @property
    def label(self) -> str:
        if self.kind == "custom":
            return f"{self.start.isoformat()} – {(self.end - timedelta(days=1)).isoformat()}"
        return self.key

    def previous(self) -> "Period":
        """The period of equal length just before: the previous month or quarter, or as many days."""
        if self.kind == "month":
            start = (self.start - timedelta(days=1)).replace(day=1)
            return Period("month", start, self.start)
        if self.kind == "quarter":
            start = self.start
            for _ in range(3):
                start = (start - timedelta(days=1)).replace(day=1)
            return Period("quarter", start, self.start)
        return Period("custom", self.start - timedelta(days=self.days), self.start)


MAX_CUSTOM_DAYS = 3 * 366


def _month(year: int, month: int) -> Period:
    last = _calendar.monthrange(year, month)[1]
    return Period("month", date(year, month, 1), date(year, month, last) + timedelta(days=1))


def parse_period(value: str | None, date_from: str | None = None, date_to: str | None = None,
                 *, today: date | None = None) -> Period:
    """``2026-03`` (month), ``2026-Q1`` (quarter), or ``custom`` with from/to dates (inclusive).
    Empty: the current month. Anything else is InvalidInput naming the field."""
    today = today or datetime.now(LOCAL).date()
    value = (value or "").strip()
    if not value and (date_from or date_to):
        value = "custom"
    if not value:
        return _month(today.year, today.month)
    if match := re.fullmatch(r"(\d{4})-(\d{2})", value):
        year, month = int(match[1]), int(match[2])
        if 2000 <= year <= 2100 and 1 <= month <= 12:
            return _month(year, month)
    elif match := re.fullmatch(r"(\d{4})-?Q([1-4])", value, re.IGNORECASE):
        year, quarter = int(match[1]), int(match[2])
        if 2000 <= year <= 2100:
            start = date(year, 3 * quarter - 2, 1)
            end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
            return Period("quarter", start, end)
    elif value == "custom":
        start, end = _date("from", date_from), _date("to", date_to)
        if end < start:
            raise InvalidInput("the end date is before the start date", code="bad_period",
                               fields={"to": ["the end date is before the start date"]})
        if (end - start).days >= MAX_CUSTOM_DAYS:
            raise InvalidInput("a custom period spans at most three years", code="bad_period",
                               fields={"to": ["a custom period spans at most three years"]})
        return Period("custom", start, end + timedelta(days=1))
    raise InvalidInput(f"unknown period {value!r}: use 2026-03, 2026-Q1 or custom dates", code="bad_period",
                       fields={"period": ["use a month (2026-03), a quarter (2026-Q1) or custom dates"]})


def _date(name: str, value: str | None) -> date:
    try:
        parsed = date.fromisoformat((value or "").strip())
    except ValueError:
        raise InvalidInput(f"{name}: not a date (YYYY-MM-DD)", code="bad_date",
                           fields={name: ["not a date (YYYY-MM-DD)"]}) from None
    if not 2000 <= parsed.year <= 2100:
        raise InvalidInput(f"{name}: out of range", code="bad_date", fields={name: ["out of range"]})
    return parsed


# -- counters: conditional counts over the facts for one period --------------------------
# The period enters every condition as two bound parameters, so each statement is built once,
# compiled once (SQLAlchemy's cache) and only executed with new dates.
def period_params(p: Period, suffix: str = "") -> dict[str, datetime]:
    return {f"p_start{suffix}": p.start_at, f"p_end{suffix}": p.end_at}


class _Bounds:
    def __init__(self, suffix: str = ""):
        self.start = bindparam(f"p_start{suffix}", type_=F.reported_at.type)
        self.end = bindparam(f"p_end{suffix}", type_=F.reported_at.type)


def _within(column, p: _Bounds):
    # NULL compares as unknown, which FILTER / CASE treat as false: no IS NOT NULL needed
    return and_(column >= p.start, column < p.end)


def _not_by_end(column, p: _Bounds):
    return or_(column.is_(None), column >= p.end)


def _before_red(column):
    return or_(F.first_red_at.is_(None), F.first_red_at > column)


def conditions(suffix: str = "") -> dict[Any, Any]:
    """Each counter's SQL condition for the period bound as p_start<suffix>/p_end<suffix>
    (summed as 1/0, or, for (name, column) keys, as the column's value)."""
    p = _Bounds(suffix)
    closed = _within(F.closed_at, p)
    hung = and_(F.outcome == "hung", _within(F.ended_at, p))
    due_unclosed = and_(_within(F.first_red_at, p), _not_by_end(F.ended_at, p))
    should_close = or_(closed, hung, due_unclosed)
    handled = _within(F.handled_at, p)
    due_unhandled = and_(_within(F.first_red_at, p), _not_by_end(F.handled_at, p), _not_by_end(F.ended_at, p))
    accepted = and_(_within(F.intake_at, p), F.accepted.is_(True))
    classed = and_(F.closed_level.is_not(None), closed)
    rated = _within(F.rated_at, p)
    tallied = _within(F.last_tally_at, p)
    disclosed = _within(F.disclosed_at, p)
    disclosure_due_open = and_(_within(F.disclosure_overdue_at, p), _not_by_end(F.disclosed_at, p))
    return {
        "reported": _within(F.reported_at, p),
        "intake": _within(F.intake_at, p),
        "accepted": accepted,
        "dispatched": and_(accepted, F.dispatched_at < p.end),
        "handled": handled,
        "handled_on_time": and_(handled, _before_red(F.handled_at)),
        "due_unhandled": due_unhandled,
        "should_handle": or_(handled, due_unhandled),
        "closed": closed,
        "closed_on_time": and_(closed, _before_red(F.closed_at)),
        "hung": hung,
        "due_unclosed": due_unclosed,
        "should_close": should_close,
        # the cheap, selective test first: AND stops at the first false
        "reworked": and_(F.rework_count > 0, should_close),
        "extended": and_(F.extension_count > 0, should_close),
        "yellow": _within(F.first_yellow_at, p),
        "red": _within(F.first_red_at, p),
        "red_open": and_(F.first_red_at < p.end, _not_by_end(F.ended_at, p), F.reported_at < p.end),
        "closed_classed": classed,
        "closed_a": and_(classed, F.closed_level == "A"),
        "closed_ab": and_(classed, F.closed_level.in_(("A", "B"))),
        "closed_abc": and_(classed, F.closed_level.in_(("A", "B", "C"))),
        "upgraded": and_(F.upgrade_count > 0, classed),
        "downgraded": and_(F.downgrade_count > 0, classed),
        "whistled": and_(F.whistle_count > 0, classed),
        "rated": rated,
        "satisfied": and_(rated, F.satisfaction.in_(sorted(SATISFIED))),
        "hours_n": and_(closed, F.handling_hours.is_not(None)),
        ("hours_sum", F.handling_hours): closed,
        ("tallies", F.tally_count): tallied,
        ("quorum_met", F.quorum_met_count): tallied,
        ("attendance_due", F.attendance_due): tallied,
        ("attendance_present", F.attendance_present): tallied,
        "resolutions": _within(F.resolution_at, p),
        "resolutions_passed": and_(_within(F.resolution_at, p), F.resolution_passed.is_(True)),
        "disclosed_on_time": and_(disclosed, or_(F.disclosure_overdue_at.is_(None),
                                                 F.disclosure_overdue_at > F.disclosed_at)),
        "should_disclose": or_(disclosed, disclosure_due_open),
    }


def _column(key: Any, condition: Any, label: str) -> Any:
    # COUNT(*) FILTER (WHERE …): cheaper per row than SUM(CASE …) (PostgreSQL ≥ 9.4, SQLite ≥ 3.30)
    if isinstance(key, tuple):
        return func.coalesce(func.sum(key[1]).filter(condition), 0).label(label)
    return func.count().filter(condition).label(label)


# Every counter needs one of these milestones inside the period (red_open aside, below).
MILESTONES = ("reported_at", "intake_at", "handled_at", "closed_at", "ended_at", "first_red_at", "first_yellow_at",
              "rated_at", "last_tally_at", "resolution_at", "disclosed_at", "disclosure_overdue_at")
TREND_MILESTONES = ("reported_at", "closed_at", "ended_at", "first_red_at")


BACKLOG_COUNTERS = ("red_open",)   # counted over the backlog, not over the period's milestones


def window(suffix: str = "", milestones: tuple[str, ...] = MILESTONES) -> Any:
    """The facts that can count in [p_start<suffix>, p_end<suffix>): a milestone inside it. Exact
    for every counter but the backlog ones (:func:`backlog_window`), and each term is an index
    range, so the database reads only the period's cases (a bitmap OR of index scans) instead of
    the whole table."""
    p = _Bounds(suffix)
    return or_(*[_within(getattr(F, name), p) for name in milestones])


def backlog_window(suffix: str = "") -> Any:
    """The facts "overdue and still open" can count: a deadline passed before the end, no end by then."""
    p = _Bounds(suffix)
    return and_(F.first_red_at < p.end, _not_by_end(F.ended_at, p))


def window_params(start: Period, end: Period, suffix: str = "_w") -> dict[str, datetime]:
    return {f"p_start{suffix}": start.start_at, f"p_end{suffix}": end.end_at}


@lru_cache(maxsize=None)
def counter_columns(suffix: str = "", only: tuple[str, ...] | None = None) -> tuple[Any, ...]:
    """The SUM(CASE …) columns of every counter (or of ``only``), labelled <name><suffix>. Built once."""
    columns = []
    for key, condition in conditions(suffix).items():
        name = key[0] if isinstance(key, tuple) else key
        if only is None or name in only:
            columns.append(_column(key, condition, name + suffix))
    return tuple(columns)


def counter_names() -> list[str]:
    return [key[0] if isinstance(key, tuple) else key for key in conditions()]


# -- metric definitions ---------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: Any                    # lazy: the Chinese term in zh (立案率…)
    numerator: str
    denominator: str | None       # None: a count (or, for kind "hours", numerator ÷ hours_n)
    group: str                    # handling / lights / levels / satisfaction / deliberation / volume
    formula: Any                  # published wording
    rule: Any                     # which events / BPMN ids, and the period rule
    kind: str = "rate"            # rate / count / hours
    headline: bool = False
    higher_is_better: bool = True

    def value(self, counts: Mapping[str, float]) -> float | None:
        """The figure, or None when the denominator is zero (shown as "—")."""
        top = counts.get(self.numerator, 0) or 0
        if self.denominator is None:
            return float(top)
        bottom = counts.get(self.denominator, 0) or 0
        if not bottom:
            return None
        return top / bottom


METRICS: tuple[Metric, ...] = (
    Metric("reported", _l("Reported cases"), "reported", None, "volume",
           _l("Cases started (reported) in the period, by any channel."),
           _l("Event case_started; its time decides the period. Split by source (case start or registration form field \"source\") and by first class."),
           kind="count", headline=True),
    Metric("filing_rate", _l("Filing rate"), "accepted", "intake", "handling",
           _l("Filed (立案) ÷ intake decisions (受理) in the period."),
           _l("Intake decision = completion of register (incidents, grid_quick) or grid_report (demands); not filed when that step ended the case at end_invalid / end_merged / end_transferred / end_rejected.")),
    Metric("dispatch_rate", _l("Dispatch rate"), "dispatched", "accepted", "handling",
           _l("Filed cases dispatched by the end of the period ÷ cases filed in the period."),
           _l("Dispatched = the first handling task became ready (grid_handle, community_accept, department_take) or start_d_clock ran (incidents); community_assign completed (demands); review completed (grid_quick).")),
    Metric("handling_rate", _l("Handling rate"), "handled", "should_handle", "handling",
           _l("Handled in the period ÷ should have been handled (handled in the period + deadline passed in the period and not handled by its end)."),
           _l("Handled = the handler reported done: verification became ready (reinspect_b, feedback, reinspect_d, grid_confirm, reinspect) or end_closed_a. Deadline passed = first red timer_fired.")),
    Metric("ontime_handling_rate", _l("On-time handling rate"), "handled_on_time", "should_handle", "handling",
           _l("Handled in the period before any deadline timer fired ÷ should have been handled."),
           _l("Same denominator as the handling rate; cases due in the period and still open count in it."),
           headline=True),
    Metric("overdue_pending_rate", _l("Overdue pending rate"), "due_unhandled", "should_handle", "handling",
           _l("Deadline passed in the period and not handled by its end ÷ should have been handled."),
           _l("Red timers: timer_a_deadline, timer_b_deadline, timer_take_deadline, timer_c_deadline, timer_district_overdue, timer_assign_deadline, timer_community_deadline, timer_department_deadline, timer_overdue."),
           higher_is_better=False),
    Metric("closing_rate", _l("Closing rate"), "closed", "should_close", "handling",
           _l("Closed in the period ÷ should have been closed (closed + shelved in the period + deadline passed in the period and still open at its end)."),
           _l("Closed = the case ended at a closing end event (end_closed_a/b/c/d, end_closed, end_answered, end_not_passed); shelved = end_hung."),
           headline=True),
    Metric("ontime_closing_rate", _l("On-time closing rate"), "closed_on_time", "should_close", "handling",
           _l("Closed in the period before any deadline timer fired ÷ should have been closed."),
           _l("An approved extension (extend_c_deadline, extension_approved) moves the deadline, so it is not late."),
           headline=True),
    Metric("rework_rate", _l("Rework rate"), "reworked", "should_close", "handling",
           _l("Cases that went through rework at least once ÷ should have been closed."),
           _l("Rework = rework_b, rework_c, rework_d (incidents), count_failed_confirmation, count_supervisor_return (demands)."),
           higher_is_better=False),
    Metric("extension_rate", _l("Extension rate"), "extended", "should_close", "handling",
           _l("Cases with at least one approved extension ÷ should have been closed."),
           _l("Extension = extend_c_deadline ran, or an extension_approved event."),
           higher_is_better=False),
    Metric("shelving_rate", _l("Shelving rate"), "hung", "should_close", "handling",
           _l("Shelved (挂账) in the period ÷ should have been closed."),
           _l("Shelved = the case ended at end_hung."), higher_is_better=False),
    Metric("yellow", _l("Yellow lights"), "yellow", None, "lights",
           _l("Cases whose first warning (at 80 percent of a limit) fired in the period."),
           _l("Yellow timers: timer_a_warning, timer_b_warning, timer_take_warning, timer_c_warning, timer_assign_warning, timer_community_warning, timer_department_warning, timer_warning."),
           kind="count", higher_is_better=False),
    Metric("red", _l("Red lights"), "red", None, "lights",
           _l("Cases whose first deadline (the full limit) passed in the period."),
           _l("First red timer_fired of the case in the period."), kind="count", headline=True,
           higher_is_better=False),
    Metric("red_open", _l("Overdue and still open"), "red_open", None, "lights",
           _l("Cases past a deadline at some time before the end of the period and still open at its end."),
           _l("A red timer fired before the end of the period; the case had not ended by then."),
           kind="count", higher_is_better=False),
    Metric("mean_hours", _l("Mean handling time (working hours)"), "hours_sum", "hours_n", "handling",
           _l("Mean of working hours from report to closure over cases closed in the period."),
           _l("case_started time to the closing event's time, counted on the business calendar (bpmn/calendar.json: working periods, holidays, make-up days). p90 by class in the table below."),
           kind="hours", headline=True, higher_is_better=False),
    Metric("local_resolution_rate", _l("Local resolution rate"), "closed_ab", "closed_classed", "levels",
           _l("Incidents closed at class A or B ÷ incidents closed, in the period."),
           _l("Class at closure = the closing end event: end_closed_a/b/c/d.")),
    Metric("within_street_rate", _l("Within-street rate"), "closed_abc", "closed_classed", "levels",
           _l("Incidents closed at class A, B or C ÷ incidents closed, in the period.")
           , _l("Class at closure = the closing end event: end_closed_a/b/c/d.")),
    Metric("grid_self_rate", _l("Grid self-handling rate"), "closed_a", "closed_classed", "levels",
           _l("Incidents closed at class A (by the grid member) ÷ incidents closed, in the period."),
           _l("end_closed_a.")),
    Metric("upgrade_rate", _l("Upgrade rate"), "upgraded", "closed_classed", "levels",
           _l("Incidents closed in the period that were upgraded at least once ÷ incidents closed."),
           _l("Upgrade = escalate_a_timeout, upgrade_a_to_b, upgrade_b_to_c, escalate_b_timeout, escalate_b_rework, upgrade_c_to_d ran."),
           higher_is_better=False),
    Metric("downgrade_rate", _l("Downgrade rate"), "downgraded", "closed_classed", "levels",
           _l("Incidents closed in the period that were downgraded at least once ÷ incidents closed."),
           _l("Downgrade = downgrade_b_to_a, downgrade_c_to_b ran."), higher_is_better=False),
    Metric("whistle_rate", _l("Whistle rate"), "whistled", "closed_classed", "levels",
           _l("Incidents closed in the period for which a whistle was blown ÷ incidents closed."),
           _l("Whistle = prepare_report ran (departments summoned). Judge it against a target band, not as higher/lower is better.")),
    Metric("satisfaction_rate", _l("Satisfaction rate"), "satisfied", "rated", "satisfaction",
           _l("Ratings \"satisfied\" or \"basically satisfied\" ÷ ratings, for cases rated in the period (latest rating of a case)."),
           _l("Form field \"satisfaction\" of a completed task: resident_confirm (demands), chief_close (incidents), close (grid_quick)."),
           headline=True),
    Metric("attendance_rate", _l("Deliberation attendance rate"), "attendance_present", "attendance_due", "deliberation",
           _l("Present ÷ due to attend, summed over the valid tallies of deliberations whose latest tally fell in the period."),
           _l("Tallies: committees_discussion, party_assembly, meeting (form fields due, present); a tally sent back as impossible figures is not counted.")),
    Metric("quorum_rate", _l("Quorum rate"), "quorum_met", "tallies", "deliberation",
           _l("Tallies that reached the quorum ÷ valid tallies (same deliberations)."),
           _l("No quorum = committee_reschedule, assembly_reschedule or meeting_reschedule ran after the tally.")),
    Metric("resolution_pass_rate", _l("Resolution pass rate"), "resolutions_passed", "resolutions", "deliberation",
           _l("Meetings with quorum in the period whose resolution passed ÷ meetings with quorum in the period."),
           _l("Meeting tally (meeting) with quorum; rejected = outcome_meeting_rejected ran.")),
    Metric("disclosure_ontime_rate", _l("Disclosure on-time rate"), "disclosed_on_time", "should_disclose", "deliberation",
           _l("Results disclosed in the period before their deadline ÷ (disclosed in the period + disclosure deadline passed in the period and not disclosed by its end)."),
           _l("result_disclosure completed; deadline = timer_result_overdue fired.")),
)
METRICS_BY_KEY = {m.key: m for m in METRICS}

# §8 metrics the event log cannot support (yet): said on the definitions page, never invented.
UNSUPPORTED: tuple[tuple[Any, Any], ...] = (
    (_l("Accurate dispatch rate"), _l("No event records whether a dispatch was accurate; department returns are recorded but a return is not proof of a wrong dispatch.")),
    (_l("On-time / accurate filing rate"), _l("The processes set no time limit on registration and record no accuracy review.")),
    (_l("On-time sign-for rate and department report on-time rate"), _l("Recorded (timer_take_deadline, timer_report_deadline) but not yet computed on these pages.")),
    (_l("Valid report rate / missed report rate"), _l("Nothing records reports that should have been made and were not (八必报 list is not modelled).")),
    (_l("On-time verification rate"), _l("Re-inspection tasks carry no deadline timer.")),
    (_l("Response rate / resolution rate / composite score"), _l("The 12345 hotline process with first-contact limits and callbacks is not deployed.")),
    (_l("Return rate, re-handling rate, direct answer rate, repeat demand rate, secretary escalation rate"), _l("Recorded in the events (count_return, end_answered, is_repeat, secretary_takes) but not yet computed on these pages.")),
    (_l("Result disclosure rate"), _l("Only on-time disclosure is computed; the public board (issue 8, part B) shows what is disclosed.")),
)


def compute(counts: Mapping[str, float]) -> dict[str, float | None]:
    return {m.key: m.value(counts) for m in METRICS}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (p90: the smallest value with at least 90% of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q - 1e-9))
    return ordered[rank - 1]


def levels() -> tuple[str, ...]:
    return LEVELS
