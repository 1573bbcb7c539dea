"""The business calendar: working hours, public holidays and make-up working days.

Time limits such as "4 working hours" or "2 working days" are computed here.

Which days are working days
---------------------------
For a date ``d`` (in the calendar's timezone, Asia/Shanghai by default):

1. the calendar file's entry for ``d.year`` decides first: a date listed under
   ``holidays`` is a day off, a date listed under ``workdays`` (调休上班, make-up
   working day, usually a Saturday or Sunday) is a working day;
2. otherwise the ``chinese_calendar`` package decides, for the years it has data for
   (1.11.0: 2004-2026);
3. otherwise Monday-Friday are working days. A year that falls through to this rule
   with no holiday data at all (neither package data nor a non-empty file entry) is
   recorded in :attr:`BusinessCalendar.warnings` and logged once, so administrators
   can add the State Council's schedule for it. It never raises: a case transaction
   must not fail because next year's holidays are not published yet.

Working time is the same ``working_periods`` on every working day (default 09:00-12:00
and 13:30-18:00, i.e. 7.5 working hours a day).

Arithmetic rules
----------------
* ``add_working_hours(dt, h)``: walk forward through working periods consuming ``h``
  hours of working time. A start outside working time (night, lunch break, weekend,
  holiday) begins at the next working period. A result that falls exactly on the end
  of a period stays there (09:00 + 3 h = 12:00, not 13:30).
* ``add_working_days(dt, n)``: the instant exactly ``n`` working days of working time
  later, expressed as *the same time of day on the n-th working day after dt* whenever
  ``dt`` lies inside a working period (boundaries included). When ``dt`` is outside
  working time it is first clamped *back* to the latest working instant at or before
  it, which is then expressed as the end of a period:

  - after the last period of a working day (e.g. 20:00)  -> that day's 18:00, so
    Monday 20:00 + 2 working days = Wednesday 18:00 (end of the n-th day's last period);
  - in a break (e.g. 12:30 at lunch) -> the end of the period before it (12:00), so
    Monday 12:30 + 2 = Wednesday 12:00;
  - before the first period of a working day, or on a weekend/holiday -> the end of
    the previous working day, so Monday 07:00 + 2 = Tuesday 18:00 and
    Saturday 10:00 + 2 = Tuesday 18:00 (two full working days, Monday and Tuesday).

  Hence ``working_hours_between(dt, add_working_days(dt, n)) == n * hours_per_day``
  for every ``dt``. A fractional part of ``n`` is added as working hours
  (``0.5`` day = 3.75 working hours). ``n == 0`` gives ``add_working_hours(dt, 0)``.
* ``working_hours_between(a, b)``: working time in ``[a, b]`` in hours (negative if
  ``b < a``).
* ``deadline(amount, unit, start, fraction)``: ``amount * fraction`` of ``unit``
  after ``start`` as ISO 8601 text with the calendar's UTC offset. ``hours`` and
  ``minutes`` are elapsed time, ``days`` are calendar days (same wall-clock time).

All inputs must be timezone-aware (ISO text is accepted too); results are aware
datetimes in the calendar's timezone. Pure Python: no application imports.
"""
from __future__ import annotations

import json
import logging
import math
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflows.clock import current_time

try:  # the package is a dependency, but a missing one must not break case handling
    import chinese_calendar as _cc
except ImportError:  # pragma: no cover - exercised only in broken installs
    _cc = None

__all__ = [
    "BusinessCalendar",
    "CalendarError",
    "DEFAULT_TIMEZONE",
    "DEFAULT_WORKING_PERIODS",
    "UNITS",
    "YearSchedule",
    "package_years",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_WORKING_PERIODS: tuple[tuple[str, str], ...] = (("09:00", "12:00"), ("13:30", "18:00"))
UNITS = ("working_hours", "working_days", "hours", "days", "minutes")

# Refuse absurd amounts before scanning years of days (and warning about each of them).
MAX_WORKING_DAYS = 2000          # ~ 8 years of working days
MAX_CALENDAR_DAYS = 3660         # 10 years, for hours/days/minutes
_SCAN_LIMIT_DAYS = 366 * 12      # safety net: a file declaring every day a holiday
_ZERO = timedelta(0)
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class CalendarError(ValueError):
    """A calendar file or a calendar call is invalid."""


@dataclass(frozen=True)
class YearSchedule:
    """One year's overrides from the calendar file."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    # False: only some days are known (e.g. the statutory holidays fixed by date, before the
    # State Council publishes the year's arrangement); listed days count, the year still warns.
    complete: bool = True

    @property
    def has_data(self) -> bool:
        return self.complete and bool(self.holidays or self.workdays)


def package_years() -> tuple[int, int] | None:
    """The (first, last) year ``chinese_calendar`` has holiday data for, or None."""
    if _cc is None:
        return None
    holidays = getattr(_cc, "holidays", None) or {}
    if not holidays:
        return None
    return min(holidays).year, max(holidays).year


class BusinessCalendar:
    """Working periods, holidays and make-up working days; see the module docstring."""

    def __init__(
        self,
        *,
        timezone_name: str = DEFAULT_TIMEZONE,
        working_periods: Iterable[Iterable[str]] = DEFAULT_WORKING_PERIODS,
        years: Mapping[int, YearSchedule] | None = None,
        use_package: bool = True,
        source: str | None = None,
    ):
        try:
            self.tz = ZoneInfo(timezone_name)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise CalendarError(f"unknown timezone {timezone_name!r} (e.g. 'Asia/Shanghai')") from None
        self.timezone_name = timezone_name
        self.periods: tuple[tuple[time, time], ...] = _parse_periods(working_periods)
        self.years: dict[int, YearSchedule] = dict(years or {})
        self.use_package = use_package and _cc is not None
        self.source = source
        self.day_length = sum(
            (datetime.combine(date.min, end) - datetime.combine(date.min, start) for start, end in self.periods),
            _ZERO,
        )
        self._package_range = package_years() if self.use_package else None
        self._days: dict[date, bool] = {}
        self._warned: dict[int, str] = {}
        self._lock = threading.Lock()

    # -- construction --------------------------------------------------------
    @classmethod
    def default(cls) -> "BusinessCalendar":
        """Default working periods in Asia/Shanghai, holidays from ``chinese_calendar`` only."""
        return cls()

    @classmethod
    def from_file(cls, path: str | Path) -> "BusinessCalendar":
        """Load a calendar file (see ``bpmn/calendar.json``); CalendarError says what is wrong."""
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CalendarError(f"{path}: cannot read the calendar file: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CalendarError(f"{path}: not valid JSON: {exc}") from None
        try:
            return cls.from_dict(document, source=str(path))
        except CalendarError as exc:
            raise CalendarError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, document: Any, *, source: str | None = None) -> "BusinessCalendar":
        """A calendar from the parsed JSON document. Keys starting with '_' are comments."""
        if not isinstance(document, dict):
            raise CalendarError("the calendar must be a JSON object")
        _refuse_unknown_keys(document, {"timezone", "working_periods", "years"}, "calendar")
        timezone_name = document.get("timezone", DEFAULT_TIMEZONE)
        if not isinstance(timezone_name, str):
            raise CalendarError("'timezone' must be a string such as 'Asia/Shanghai'")
        periods = document.get("working_periods", DEFAULT_WORKING_PERIODS)
        raw_years = document.get("years", {})
        if not isinstance(raw_years, dict):
            raise CalendarError("'years' must be an object keyed by year, e.g. {\"2027\": {...}}")
        years: dict[int, YearSchedule] = {}
        for key, entry in raw_years.items():
            if key.startswith("_"):
                continue
            if not re.fullmatch(r"\d{4}", key):
                raise CalendarError(f"years: {key!r} is not a four-digit year")
            years[int(key)] = _parse_year(int(key), entry)
        return cls(timezone_name=timezone_name, working_periods=periods, years=years, source=source)

    # -- days ----------------------------------------------------------------
    def is_working_day(self, day: date | datetime | str) -> bool:
        """Whether ``day`` is a working day (a datetime counts by its date in the calendar's zone)."""
        if isinstance(day, str):
            day = _parse_day_or_datetime(day)
        if isinstance(day, datetime):
            day = self._local(day, "day").date()
        elif not isinstance(day, date):
            raise TypeError(f"expected a date or datetime, got {type(day).__name__}")
        known = self._days.get(day)
        if known is None:
            known = self._classify(day)
            self._days[day] = known
        return known

    def _classify(self, day: date) -> bool:
        schedule = self.years.get(day.year)
        if schedule is not None:
            if day in schedule.holidays:
                return False
            if day in schedule.workdays:
                return True
        if self._package_covers(day.year):
            return bool(_cc.is_workday(day))
        if schedule is None or not schedule.has_data:
            self._warn_no_data(day.year)
        return day.weekday() < 5

    def _package_covers(self, year: int) -> bool:
        return self._package_range is not None and self._package_range[0] <= year <= self._package_range[1]

    def has_data(self, year: int) -> bool:
        """Whether holidays for ``year`` are known (package or a non-empty file entry)."""
        schedule = self.years.get(year)
        return self._package_covers(year) or (schedule is not None and schedule.has_data)

    def coverage(self, year: int) -> str | None:
        """Where ``year``'s holidays come from: 'package', 'file', 'package+file', or None."""
        schedule = self.years.get(year)
        in_file = schedule is not None and schedule.has_data
        in_package = self._package_covers(year)
        if in_package and in_file:
            return "package+file"
        return "package" if in_package else "file" if in_file else None

    # -- warnings --------------------------------------------------------------
    def _warn_no_data(self, year: int) -> None:
        if year in self._warned:
            return
        covered = (
            f"the chinese-calendar package covers {self._package_range[0]}-{self._package_range[1]}"
            if self._package_range else "no chinese-calendar package data is used"
        )
        where = self.source or "the calendar file (bpmn/calendar.json)"
        schedule = self.years.get(year)
        if schedule is not None and not schedule.complete:
            message = (
                f"{year}: incomplete holiday data ({covered}; {where} marks {year} \"complete\": false "
                f"with {len(schedule.holidays)} holiday(s) and {len(schedule.workdays)} make-up working day(s) "
                f"known); counting the other Monday-Friday days as working days. Add the State Council's "
                f"{year} holiday schedule under \"years\" -> \"{year}\" and set \"complete\": true."
            )
        else:
            message = (
                f"{year}: no public holiday / make-up working day data ({covered}, and {where} "
                f"lists none for {year}); counting Monday-Friday as working days. Add the State "
                f"Council's {year} holiday schedule under \"years\" -> \"{year}\"."
            )
        with self._lock:
            if year in self._warned:
                return
            self._warned[year] = message
        log.warning("business calendar: %s", message)

    @property
    def warnings(self) -> list[str]:
        """One message per year that fell back to weekends-only, oldest year first."""
        with self._lock:
            return [self._warned[y] for y in sorted(self._warned)]

    def warnings_for(self, year: int) -> list[str]:
        with self._lock:
            message = self._warned.get(year)
        return [message] if message else []

    def check_years(self, years: Iterable[int]) -> list[str]:
        """Warnings for those of ``years`` without holiday data (recorded as if used)."""
        found: list[str] = []
        for year in years:
            if not self.has_data(year):
                self._warn_no_data(year)
                found.extend(self.warnings_for(year))
        return found

    # -- working time --------------------------------------------------------------
    @property
    def hours_per_day(self) -> float:
        return self.day_length.total_seconds() / 3600

    @property
    def working_periods(self) -> tuple[tuple[str, str], ...]:
        return tuple((s.strftime("%H:%M"), e.strftime("%H:%M")) for s, e in self.periods)

    def _periods_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's working periods as aware UTC instants ([] on a day off)."""
        if not self.is_working_day(day):
            return []
        return [
            (
                datetime.combine(day, start, tzinfo=self.tz).astimezone(timezone.utc),
                datetime.combine(day, end, tzinfo=self.tz).astimezone(timezone.utc),
            )
            for start, end in self.periods
        ]

    def add_working_hours(self, start: datetime | str, hours: float) -> datetime:
        """``start`` plus ``hours`` (fractional allowed) of working time."""
        start = self._local(start, "start")
        amount = _amount(hours, "hours", MAX_WORKING_DAYS * self.hours_per_day)
        return self._add_working_time(start, timedelta(hours=amount))

    def add_working_days(self, start: datetime | str, days: float) -> datetime:
        """``start`` plus ``days`` working days; see the module docstring for the rule."""
        start = self._local(start, "start")
        amount = _amount(days, "days", MAX_WORKING_DAYS)
        whole = int(amount)
        rest = self.day_length * (amount - whole)
        if whole == 0:
            return self._add_working_time(start, rest)
        anchor_day, anchor_time = self._clamp_back(start)
        day = anchor_day
        for _ in range(whole):
            day = self._next_working_day(day)
        landed = datetime.combine(day, anchor_time, tzinfo=self.tz)
        if rest > _ZERO:
            return self._add_working_time(landed, rest)
        return landed.astimezone(self.tz)

    def working_hours_between(self, a: datetime | str, b: datetime | str) -> float:
        """Working hours from ``a`` to ``b`` (negative when ``b`` is earlier)."""
        a, b = self._local(a, "a"), self._local(b, "b")
        sign = 1
        if b < a:
            a, b, sign = b, a, -1
        if (b - a).days > MAX_CALENDAR_DAYS:
            raise CalendarError(f"working_hours_between: more than {MAX_CALENDAR_DAYS} days apart")
        a_utc, b_utc = a.astimezone(timezone.utc), b.astimezone(timezone.utc)
        total = _ZERO
        day, last = a.date(), b.date()
        while day <= last:
            for begin, end in self._periods_on(day):
                overlap = min(end, b_utc) - max(begin, a_utc)
                if overlap > _ZERO:
                    total += overlap
            day += timedelta(days=1)
        return sign * total.total_seconds() / 3600

    def deadline(
        self,
        amount: float,
        unit: str,
        start: datetime | str | None = None,
        fraction: float = 1.0,
    ) -> str:
        """ISO 8601 text (with offset) ``amount * fraction`` ``unit`` after ``start``
        (default: the case clock). Units: working_hours, working_days, hours, days, minutes."""
        if unit not in UNITS:
            raise CalendarError(f"unknown time unit {unit!r}; use one of {', '.join(UNITS)}")
        start = self._local(current_time() if start is None else start, "start")
        amount = _amount(amount, "amount")
        fraction = _amount(fraction, "fraction")
        value = amount * fraction
        if unit == "working_hours":
            result = self.add_working_hours(start, value)
        elif unit == "working_days":
            result = self.add_working_days(start, value)
        else:
            limit = {"hours": MAX_CALENDAR_DAYS * 24, "minutes": MAX_CALENDAR_DAYS * 1440, "days": MAX_CALENDAR_DAYS}
            _amount(value, unit, limit[unit])
            if unit == "days":  # calendar days: same wall-clock time in the calendar's zone
                result = (start + timedelta(days=value)).astimezone(timezone.utc)
            else:
                result = start.astimezone(timezone.utc) + timedelta(**{unit: value})
        return result.astimezone(self.tz).isoformat()

    # -- internals -------------------------------------------------------------------
    def _local(self, value: datetime | str, what: str) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise CalendarError(f"{what}: not an ISO 8601 datetime: {value!r}") from None
        if not isinstance(value, datetime):
            raise TypeError(f"{what}: expected an aware datetime or ISO 8601 text, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise CalendarError(f"{what}: datetime {value.isoformat()} has no timezone (add e.g. '+08:00')")
        return value.astimezone(self.tz)

    def _add_working_time(self, start: datetime, remaining: timedelta) -> datetime:
        current = start.astimezone(timezone.utc)
        day = start.astimezone(self.tz).date()
        for _ in range(_SCAN_LIMIT_DAYS):
            for begin, end in self._periods_on(day):
                if end < current or (end == current and remaining > _ZERO):
                    continue
                begin = max(begin, current)
                if remaining <= end - begin:
                    return (begin + remaining).astimezone(self.tz)
                remaining -= end - begin
            day += timedelta(days=1)
        raise CalendarError(f"no working time found within {_SCAN_LIMIT_DAYS} days of {start.isoformat()}")

    def _next_working_day(self, day: date) -> date:
        for _ in range(_SCAN_LIMIT_DAYS):
            day += timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise CalendarError(f"no working day found within {_SCAN_LIMIT_DAYS} days after {day}")

    def _previous_working_day(self, day: date) -> date:
        for _ in range(_SCAN_LIMIT_DAYS):
            day -= timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise CalendarError(f"no working day found within {_SCAN_LIMIT_DAYS} days before {day}")

    def _clamp_back(self, moment: datetime) -> tuple[date, time]:
        """The latest working instant at or before ``moment``, as (working day, wall time)."""
        day, clock_time = moment.date(), moment.timetz().replace(tzinfo=None)
        first_start, last_end = self.periods[0][0], self.periods[-1][1]
        if not self.is_working_day(day) or clock_time < first_start:
            return self._previous_working_day(day), last_end
        for start, end in reversed(self.periods):
            if clock_time >= start:
                return day, min(clock_time, end)
        return day, last_end  # unreachable: clock_time >= first_start

    def __repr__(self) -> str:
        return (f"BusinessCalendar(timezone={self.timezone_name!r}, periods={self.working_periods}, "
                f"file_years={sorted(self.years)}, package={self._package_range}, source={self.source!r})")


# --- parsing helpers -----------------------------------------------------------------

def _refuse_unknown_keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(k for k in entry if not (isinstance(k, str) and k.startswith("_")) and k not in allowed)
    if unknown:
        raise CalendarError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected {', '.join(sorted(allowed))} "
            "(keys starting with '_' are comments)"
        )


def _parse_periods(raw: Any) -> tuple[tuple[time, time], ...]:
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        raise CalendarError("working_periods must be a list of [\"HH:MM\", \"HH:MM\"] pairs")
    periods: list[tuple[time, time]] = []
    for item in raw:
        pair = list(item) if isinstance(item, (list, tuple)) else None
        if pair is None or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise CalendarError(f"working_periods: {item!r} is not a [\"HH:MM\", \"HH:MM\"] pair")
        parsed = []
        for text in pair:
            match = _HHMM.fullmatch(text)
            if match is None:
                raise CalendarError(f"working_periods: {text!r} is not a time of day HH:MM")
            parsed.append(time(int(match.group(1)), int(match.group(2))))
        start, end = parsed
        if start >= end:
            raise CalendarError(f"working_periods: {pair[0]}-{pair[1]} does not end after it starts")
        if periods and start < periods[-1][1]:
            raise CalendarError(f"working_periods: {pair[0]}-{pair[1]} overlaps or precedes the period before it")
        periods.append((start, end))
    if not periods:
        raise CalendarError("working_periods must name at least one period")
    return tuple(periods)


def _parse_year(year: int, entry: Any) -> YearSchedule:
    where = f"years.{year}"
    if not isinstance(entry, dict):
        raise CalendarError(f"{where} must be an object with 'holidays' and 'workdays' lists")
    _refuse_unknown_keys(entry, {"holidays", "workdays", "complete"}, where)
    complete = entry.get("complete", True)
    if not isinstance(complete, bool):
        raise CalendarError(f"{where}.complete must be true or false")
    lists: dict[str, frozenset[date]] = {}
    for key in ("holidays", "workdays"):
        raw = entry.get(key, [])
        if not isinstance(raw, list):
            raise CalendarError(f"{where}.{key} must be a list of dates \"YYYY-MM-DD\"")
        days = set()
        for text in raw:
            if not isinstance(text, str) or not _DATE.fullmatch(text):
                raise CalendarError(f"{where}.{key}: {text!r} is not a date \"YYYY-MM-DD\"")
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise CalendarError(f"{where}.{key}: {text!r} is not a valid date") from None
            if day.year != year:
                raise CalendarError(f"{where}.{key}: {text} is not in {year}")
            days.add(day)
        lists[key] = frozenset(days)
    both = lists["holidays"] & lists["workdays"]
    if both:
        raise CalendarError(f"{where}: {', '.join(sorted(d.isoformat() for d in both))} listed as holiday and workday")
    return YearSchedule(holidays=lists["holidays"], workdays=lists["workdays"], complete=complete)


def _parse_day_or_datetime(text: str) -> date | datetime:
    text = text.strip()
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise CalendarError(f"not a valid date: {text!r}") from None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise CalendarError(f"not an ISO 8601 date or datetime: {text!r}") from None


def _amount(value: Any, what: str, limit: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise CalendarError(f"{what} must be a finite number >= 0, got {value!r}")
    if limit is not None and value > limit:
        raise CalendarError(f"{what} {value!r} is too large (at most {limit:g})")
    return float(value)
