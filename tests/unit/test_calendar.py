"""The business calendar: working hours, holidays and make-up days, on real 2025/2026 data.

The 2026 schedule in chinese_calendar 1.11 (State Council, 国办发明电〔2025〕7号):
New Year 1-3 Jan (Sun 4 Jan worked); Spring Festival 15-23 Feb (Sat 14 Feb and Sat 28 Feb
worked); Qingming 4-6 Apr; Labour Day 1-5 May (Sat 9 May worked); Dragon Boat 19-21 Jun;
Mid-Autumn Fri 25 - Sun 27 Sep; National Day 1-7 Oct (Sun 20 Sep and Sat 10 Oct worked).
Note that Friday 2026-09-25 is itself the Mid-Autumn holiday.
"""
from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from SpiffWorkflow.bpmn import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402

from workflows.calendar import BusinessCalendar, CalendarError, package_years  # noqa: E402
from workflows.clock import case_clock  # noqa: E402
from workflows.scripting import HELPER_NAMES, RestrictedEnvironment, make_script_engine  # noqa: E402

CST = ZoneInfo("Asia/Shanghai")
PLUS8 = timedelta(hours=8)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=CST)


@pytest.fixture
def cal() -> BusinessCalendar:
    return BusinessCalendar.default()


def write_calendar(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


# The first year chinese_calendar has no data for (2027 with 1.11.0); computed so the
# tests keep meaning the same thing when a newer package adds 2027.
NO_DATA_YEAR = package_years()[1] + 1


def first_weekday_on_or_after(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday()) % 7)


# --- what the package covers ----------------------------------------------------------

def test_package_covers_2004_to_at_least_2026():
    first, last = package_years()
    assert first == 2004 and last >= 2026


def test_real_2026_schedule(cal):
    # Mid-Autumn Fri 25 - Sun 27 Sep, National Day 1-7 Oct; make-up Sun 20 Sep and Sat 10 Oct.
    assert not cal.is_working_day(date(2026, 9, 25))
    assert cal.is_working_day(date(2026, 9, 24)) and cal.is_working_day(date(2026, 9, 28))
    assert [cal.is_working_day(date(2026, 10, d)) for d in range(1, 11)] == [False] * 7 + [True, True, True]
    assert cal.is_working_day(date(2026, 9, 20))  # Sunday
    assert cal.is_working_day(date(2026, 10, 10))  # Saturday
    assert not cal.is_working_day(date(2026, 10, 11))  # an ordinary Sunday
    assert not cal.is_working_day(date(2026, 9, 19))  # an ordinary Saturday
    assert cal.coverage(2026) == "package" and cal.warnings == []


def test_is_working_day_takes_a_datetime_by_its_date_in_the_calendar_zone(cal):
    # 2026-10-09 17:00 UTC is Saturday 10 Oct 01:00 in Beijing: a make-up working day.
    assert cal.is_working_day(datetime(2026, 10, 9, 17, 0, tzinfo=timezone.utc))
    # 2026-10-10 17:00 UTC is Sunday 11 Oct in Beijing.
    assert not cal.is_working_day(datetime(2026, 10, 10, 17, 0, tzinfo=timezone.utc))


# --- working hours across holidays ----------------------------------------------------

@pytest.mark.parametrize("start, expected", [
    # Thursday before Mid-Autumn (Fri 25 - Sun 27 Sep 2026): 2 h on Thursday, 2 h on Monday.
    (at(2026, 9, 24, 16, 0), at(2026, 9, 28, 11, 0)),
    # Wednesday before National Day 2026 (1-7 Oct): resumes Thursday 8 Oct.
    (at(2026, 9, 30, 16, 0), at(2026, 10, 8, 11, 0)),
    # Friday before Qingming 2026 (Sat 4 - Mon 6 Apr): resumes Tuesday 7 Apr.
    (at(2026, 4, 3, 16, 0), at(2026, 4, 7, 11, 0)),
    # Friday 2026-09-25 16:00 is itself the Mid-Autumn holiday: the clock starts Monday 09:00.
    (at(2026, 9, 25, 16, 0), at(2026, 9, 28, 14, 30)),
    # Friday before Spring Festival 2025 (28 Jan - 4 Feb): Sunday 26 Jan 2025 is worked.
    (at(2025, 1, 24, 16, 0), at(2025, 1, 26, 11, 0)),
    # Wednesday before Labour Day 2025 (Thu 1 - Mon 5 May): resumes Tuesday 6 May.
    (at(2025, 4, 30, 16, 0), at(2025, 5, 6, 11, 0)),
])
def test_four_working_hours_before_a_public_holiday(cal, start, expected):
    assert cal.add_working_hours(start, 4) == expected


def test_make_up_saturday_counts_as_a_working_day(cal):
    # Friday 9 Oct 2026 16:00 + 4 wh: Saturday 10 Oct is worked, so 11:00 that Saturday.
    assert cal.add_working_hours(at(2026, 10, 9, 16, 0), 4) == at(2026, 10, 10, 11, 0)
    # 2025: Saturday 11 Oct 2025 is the make-up day after National Day (1-8 Oct).
    assert cal.is_working_day(date(2025, 10, 11))
    assert cal.add_working_hours(at(2025, 10, 11, 9, 0), 7.5) == at(2025, 10, 11, 18, 0)
    # An ordinary Saturday start waits for the make-up Sunday 20 Sep 2026.
    assert cal.add_working_hours(at(2026, 9, 19, 10, 0), 4) == at(2026, 9, 20, 14, 30)
    assert cal.add_working_days(at(2026, 10, 9, 10, 0), 1) == at(2026, 10, 10, 10, 0)


def test_lunch_break_is_skipped(cal):
    assert cal.add_working_hours(at(2026, 3, 2, 11, 0), 2) == at(2026, 3, 2, 14, 30)
    assert cal.add_working_hours(at(2026, 3, 2, 12, 30), 1) == at(2026, 3, 2, 14, 30)
    # Exactly reaching the end of a period stays there, it does not jump to 13:30.
    assert cal.add_working_hours(at(2026, 3, 2, 9, 0), 3) == at(2026, 3, 2, 12, 0)
    assert cal.add_working_hours(at(2026, 3, 2, 9, 0), 7.5) == at(2026, 3, 2, 18, 0)
    assert cal.working_hours_between(at(2026, 3, 2, 11, 0), at(2026, 3, 2, 14, 0)) == 1.5


def test_fractional_hours(cal):
    assert cal.add_working_hours(at(2026, 3, 2, 17, 0), 1.25) == at(2026, 3, 3, 9, 15)
    assert cal.add_working_hours(at(2026, 3, 2, 10, 0), 0) == at(2026, 3, 2, 10, 0)


# --- working days ------------------------------------------------------------------------

def test_two_working_days_over_a_weekend(cal):
    # Thursday 5 Mar 2026 10:00 -> Monday 9 Mar 10:00; Friday 15:00 -> Tuesday 15:00.
    assert cal.add_working_days(at(2026, 3, 5, 10, 0), 2) == at(2026, 3, 9, 10, 0)
    assert cal.add_working_days(at(2026, 3, 6, 15, 0), 2) == at(2026, 3, 10, 15, 0)
    assert cal.add_working_days(at(2026, 3, 6, 13, 30), 1) == at(2026, 3, 9, 13, 30)


def test_working_days_over_national_day(cal):
    # Wednesday 30 Sep 2026 10:00 + 2 working days: Thursday 8 Oct is the first, Friday 9 the second.
    assert cal.add_working_days(at(2026, 9, 30, 10, 0), 2) == at(2026, 10, 9, 10, 0)
    # ... + 3 lands on the make-up Saturday 10 Oct.
    assert cal.add_working_days(at(2026, 9, 30, 10, 0), 3) == at(2026, 10, 10, 10, 0)


@pytest.mark.parametrize("start, hours_result, days_result", [
    # Monday night: working time starts Tuesday 09:00; 2 working days end Wednesday 18:00.
    (at(2026, 3, 2, 20, 0), at(2026, 3, 3, 14, 30), at(2026, 3, 4, 18, 0)),
    # Monday 02:00 (before opening): Monday is a full working day, so 2 days end Tuesday 18:00.
    (at(2026, 3, 2, 2, 0), at(2026, 3, 2, 14, 30), at(2026, 3, 3, 18, 0)),
    # Monday 12:30 (lunch): counts from 12:00/13:30, so 2 days end Wednesday 12:00.
    (at(2026, 3, 2, 12, 30), at(2026, 3, 2, 17, 30), at(2026, 3, 4, 12, 0)),
    # National Day 1 Oct 2026 10:00: the clock starts Thursday 8 Oct 09:00.
    (at(2026, 10, 1, 10, 0), at(2026, 10, 8, 14, 30), at(2026, 10, 9, 18, 0)),
    # Ordinary Saturday 7 Mar 2026: Monday and Tuesday are the two working days.
    (at(2026, 3, 7, 10, 0), at(2026, 3, 9, 14, 30), at(2026, 3, 10, 18, 0)),
])
def test_starting_at_night_or_on_a_holiday(cal, start, hours_result, days_result):
    assert cal.add_working_hours(start, 4) == hours_result
    assert cal.add_working_days(start, 2) == days_result


def test_working_days_always_add_whole_days_of_working_time(cal):
    starts = [at(2026, 9, 24, h, m) + timedelta(days=d) for d in range(0, 18) for h, m in
              [(0, 0), (8, 59), (9, 0), (10, 15), (12, 0), (12, 45), (13, 30), (17, 59), (18, 0), (23, 0)]]
    for start in starts:
        for n in (1, 2, 5):
            result = cal.add_working_days(start, n)
            assert result > start
            assert cal.working_hours_between(start, result) == n * 7.5, (start, n, result)


def test_fractional_working_days(cal):
    # 1.5 working days from Monday 10:00 = Tuesday 10:00 + 3.75 working hours.
    assert cal.add_working_days(at(2026, 3, 2, 10, 0), 1.5) == at(2026, 3, 3, 15, 15)
    assert cal.add_working_days(at(2026, 3, 2, 10, 0), 0.5) == at(2026, 3, 2, 15, 15)


def test_results_are_in_the_calendar_zone_whatever_the_input_zone(cal):
    start_utc = datetime(2026, 9, 24, 8, 0, tzinfo=timezone.utc)  # 16:00 in Beijing
    result = cal.add_working_hours(start_utc, 4)
    assert result == at(2026, 9, 28, 11, 0) and result.utcoffset() == PLUS8
    assert cal.add_working_hours("2026-09-24T08:00:00Z", 4) == at(2026, 9, 28, 11, 0)


def test_working_hours_between(cal):
    # Thursday 24 Sep 16:00 -> Monday 28 Sep 11:00 across Mid-Autumn: 2 + 2 hours.
    assert cal.working_hours_between(at(2026, 9, 24, 16, 0), at(2026, 9, 28, 11, 0)) == 4
    assert cal.working_hours_between(at(2026, 9, 28, 11, 0), at(2026, 9, 24, 16, 0)) == -4
    assert cal.working_hours_between(at(2026, 10, 1, 0, 0), at(2026, 10, 8, 0, 0)) == 0


# --- deadline() -----------------------------------------------------------------------------

def test_deadline_fraction_applies_to_the_amount(cal):
    # 0.8 x 4 working hours = 3.2 h = 3 h 12 min: Monday 16:00 -> Tuesday 10:12.
    assert cal.deadline(4, "working_hours", at(2026, 3, 2, 16, 0), fraction=0.8) == "2026-03-03T10:12:00+08:00"
    # 0.8 x 2 working days = 1.6 days = 12 working hours: Monday 10:00 -> Tuesday 16:00.
    assert cal.deadline(2, "working_days", at(2026, 3, 2, 10, 0), 0.8) == "2026-03-03T16:00:00+08:00"
    # Before a holiday: Thursday 24 Sep 16:00 + 3.2 wh -> Monday 28 Sep 10:12.
    assert cal.deadline(4, "working_hours", at(2026, 9, 24, 16, 0), fraction=0.8) == "2026-09-28T10:12:00+08:00"


def test_deadline_string_parses_back_with_its_offset(cal):
    text = cal.deadline(4, "working_hours", datetime(2026, 9, 24, 8, 0, tzinfo=timezone.utc))
    assert text == "2026-09-28T11:00:00+08:00"
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == PLUS8
    assert parsed == datetime(2026, 9, 28, 3, 0, tzinfo=timezone.utc)


def test_deadline_calendar_units(cal):
    start = at(2026, 9, 30, 16, 0)
    assert cal.deadline(2, "days", start) == "2026-10-02T16:00:00+08:00"  # holidays not skipped
    assert cal.deadline(30, "hours", start) == "2026-10-01T22:00:00+08:00"
    assert cal.deadline(90, "minutes", start) == "2026-09-30T17:30:00+08:00"
    assert cal.deadline(24, "hours", start, fraction=0.5) == "2026-10-01T04:00:00+08:00"


def test_deadline_start_defaults_to_the_case_clock(cal):
    with case_clock(datetime(2026, 9, 24, 8, 0, tzinfo=timezone.utc)):
        assert cal.deadline(4, "working_hours") == "2026-09-28T11:00:00+08:00"


@pytest.mark.parametrize("call, error", [
    (lambda c: c.deadline(4, "fortnights", at(2026, 3, 2, 9, 0)), CalendarError),
    (lambda c: c.deadline(-1, "working_hours", at(2026, 3, 2, 9, 0)), CalendarError),
    (lambda c: c.deadline(float("nan"), "hours", at(2026, 3, 2, 9, 0)), CalendarError),
    (lambda c: c.deadline("4", "hours", at(2026, 3, 2, 9, 0)), TypeError),
    (lambda c: c.deadline(True, "hours", at(2026, 3, 2, 9, 0)), TypeError),
    (lambda c: c.deadline(10**7, "working_days", at(2026, 3, 2, 9, 0)), CalendarError),
    (lambda c: c.add_working_hours(datetime(2026, 3, 2, 9, 0), 1), CalendarError),  # naive
    (lambda c: c.add_working_days("not a date", 1), CalendarError),
])
def test_bad_calls_are_refused(cal, call, error):
    with pytest.raises(error):
        call(cal)


# --- years without data --------------------------------------------------------------------

def test_year_without_data_falls_back_to_weekends_with_a_warning(cal):
    year = NO_DATA_YEAR  # 2027 with chinese_calendar 1.11.0
    friday = first_weekday_on_or_after(date(year, 3, 1), 4)
    start = datetime.combine(friday, datetime.min.time(), tzinfo=CST).replace(hour=16)
    # No exception; Saturday and Sunday are days off, Monday is a working day.
    assert cal.add_working_hours(start, 4) == start + timedelta(days=3, hours=-5)  # Monday 11:00
    assert cal.deadline(2, "working_days", start) == (start + timedelta(days=4)).isoformat()  # Tuesday 16:00
    assert not cal.is_working_day(friday + timedelta(days=1))
    (message,) = cal.warnings_for(year)
    assert str(year) in message and "Monday-Friday" in message and "State Council" in message
    assert cal.warnings == [message]  # recorded once however often the year is used
    assert cal.warnings_for(year - 1) == [] and cal.coverage(year) is None and not cal.has_data(year)


def test_2027_in_the_shipped_calendar_file_lists_only_statutory_days_and_still_warns():
    path = _ROOT / "bpmn" / "calendar.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    entry = document["years"]["2027"]
    # The days fixed by the 2024 holiday law; the State Council's arrangement is not out yet.
    assert entry["complete"] is False and entry["workdays"] == []
    assert {"2027-01-01", "2027-02-05", "2027-02-08", "2027-04-05", "2027-05-01", "2027-06-09",
            "2027-09-15", "2027-10-03"} <= set(entry["holidays"]) and len(entry["holidays"]) == 13
    assert "State Council" in entry["_comment"]
    cal = BusinessCalendar.from_file(path)
    assert cal.working_periods == (("09:00", "12:00"), ("13:30", "18:00"))
    assert cal.timezone_name == "Asia/Shanghai" and cal.hours_per_day == 7.5
    if package_years()[1] < 2027:
        # Thursday 31 Dec 2026 16:00 + 4 wh: New Year's Day (Friday) is off -> Monday 4 Jan 11:00.
        assert cal.add_working_hours(at(2026, 12, 31, 16, 0), 4) == at(2027, 1, 4, 11, 0)
        # Friday 8 Jan 2027 16:00 + 4 wh -> Monday 11 Jan 11:00 (weekends only otherwise).
        assert cal.add_working_hours(at(2027, 1, 8, 16, 0), 4) == at(2027, 1, 11, 11, 0)
        (message,) = cal.warnings_for(2027)
        assert str(path) in message and "incomplete" in message and "13 holiday(s)" in message
        assert not cal.has_data(2027) and cal.coverage(2027) is None
    assert cal.check_years([2025, 2026]) == []


def test_an_incomplete_year_honours_its_listed_days_and_warns():
    cal = BusinessCalendar.from_dict({"years": {str(NO_DATA_YEAR): {
        "complete": False, "holidays": [f"{NO_DATA_YEAR}-03-03"], "workdays": [f"{NO_DATA_YEAR}-03-06"]}}})
    assert not cal.is_working_day(date(NO_DATA_YEAR, 3, 3))
    assert cal.is_working_day(date(NO_DATA_YEAR, 3, 6))
    assert cal.warnings == []  # listed days are known; an unlisted one falls back and warns
    cal.is_working_day(date(NO_DATA_YEAR, 3, 9))
    assert "incomplete" in cal.warnings_for(NO_DATA_YEAR)[0]
    with pytest.raises(CalendarError, match="complete must be true or false"):
        BusinessCalendar.from_dict({"years": {"2027": {"complete": "no"}}})


def test_check_years_reports_missing_years_up_front(cal):
    found = cal.check_years([2026, NO_DATA_YEAR])
    assert len(found) == 1 and str(NO_DATA_YEAR) in found[0]
    assert cal.warnings == found


def test_warnings_are_not_python_warnings(cal, recwarn, caplog):
    cal.add_working_hours(at(NO_DATA_YEAR, 3, 1, 9, 0), 1)
    assert len(recwarn) == 0  # pytest turns warnings into errors; a case must not fail
    assert any(str(NO_DATA_YEAR) in r.getMessage() for r in caplog.records)


# --- the calendar file ----------------------------------------------------------------------

def test_file_overrides_beat_the_package(tmp_path):
    path = write_calendar(tmp_path, {
        "timezone": "Asia/Shanghai",
        "working_periods": [["09:00", "12:00"], ["13:30", "18:00"]],
        "years": {
            # A fake holiday on an ordinary Tuesday, a fake make-up Saturday, and the package's
            # Mid-Autumn Friday turned back into a working day.
            "2026": {"_comment": "test only", "holidays": ["2026-03-03"],
                     "workdays": ["2026-03-07", "2026-09-25"]},
        },
    })
    cal = BusinessCalendar.from_file(path)
    assert not cal.is_working_day(date(2026, 3, 3))
    assert cal.is_working_day(date(2026, 3, 7))
    assert cal.is_working_day(date(2026, 9, 25))
    assert not cal.is_working_day(date(2026, 9, 26))  # the rest still from the package
    assert cal.add_working_hours(at(2026, 3, 2, 16, 0), 4) == at(2026, 3, 4, 11, 0)
    assert cal.add_working_hours(at(2026, 9, 24, 16, 0), 4) == at(2026, 9, 25, 11, 0)
    assert cal.add_working_days(at(2026, 3, 6, 10, 0), 1) == at(2026, 3, 7, 10, 0)
    assert cal.coverage(2026) == "package+file" and cal.warnings == []


def test_file_extends_a_year_the_package_lacks(tmp_path):
    year = NO_DATA_YEAR
    friday = first_weekday_on_or_after(date(year, 3, 1), 4)
    monday = friday + timedelta(days=3)
    # Test data only: a made-up holiday on that Monday, a made-up make-up Saturday.
    path = write_calendar(tmp_path, {"years": {str(year): {
        "holidays": [monday.isoformat()], "workdays": [(friday + timedelta(days=1)).isoformat()]}}})
    cal = BusinessCalendar.from_file(path)
    start = datetime.combine(friday, datetime.min.time(), tzinfo=CST).replace(hour=16)
    assert cal.add_working_hours(start, 4) == start + timedelta(hours=19)  # Saturday 11:00
    assert cal.add_working_hours(start, 11) == start + timedelta(days=4, hours=-5.5)  # Tuesday 10:30
    assert cal.coverage(year) == "file" and cal.warnings == []


def test_file_can_change_working_periods_and_timezone(tmp_path):
    path = write_calendar(tmp_path, {"timezone": "Asia/Urumqi", "working_periods": [["10:00", "14:00"], ["15:30", "19:30"]]})
    cal = BusinessCalendar.from_file(path)
    urumqi = ZoneInfo("Asia/Urumqi")  # UTC+6
    result = cal.add_working_hours(datetime(2026, 9, 24, 18, 0, tzinfo=urumqi), 4)
    assert result == datetime(2026, 9, 28, 12, 30, tzinfo=urumqi) and result.utcoffset() == timedelta(hours=6)
    assert cal.hours_per_day == 8


@pytest.mark.parametrize("document, message", [
    ({"years": {"2027": {"holidays": ["2027-13-01"]}}}, "not a valid date"),
    ({"years": {"2027": {"holidays": ["2026-10-01"]}}}, "not in 2027"),
    ({"years": {"2027": {"holidays": ["2027-01-01"], "workdays": ["2027-01-01"]}}}, "holiday and workday"),
    ({"years": {"2027": {"holiday": []}}}, "unknown key"),
    ({"years": {"27": {}}}, "four-digit year"),
    ({"years": {"2027": ["2027-01-01"]}}, "must be an object"),
    ({"working_periods": [["09:00", "12:00"], ["11:00", "18:00"]]}, "overlaps"),
    ({"working_periods": [["18:00", "09:00"]]}, "does not end after"),
    ({"working_periods": [["9am", "12:00"]]}, "HH:MM"),
    ({"working_periods": []}, "at least one"),
    ({"timezone": "Mars/Olympus"}, "unknown timezone"),
    ({"holidays": ["2027-01-01"]}, "unknown key"),
    ([], "JSON object"),
])
def test_invalid_calendar_files_are_refused_with_the_reason(tmp_path, document, message):
    path = write_calendar(tmp_path, document)
    with pytest.raises(CalendarError, match=message) as info:
        BusinessCalendar.from_file(path)
    assert str(path) in str(info.value)


def test_unreadable_calendar_file(tmp_path):
    with pytest.raises(CalendarError, match="cannot read"):
        BusinessCalendar.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(CalendarError, match="not valid JSON"):
        BusinessCalendar.from_file(bad)


# --- script helpers --------------------------------------------------------------------------

def test_calendar_helpers_are_registered():
    assert {"add_working_hours", "add_working_days", "working_hours_between", "deadline"} <= HELPER_NAMES


def test_helpers_in_restricted_scripts():
    env = RestrictedEnvironment()
    with case_clock(datetime(2026, 9, 24, 8, 0, tzinfo=timezone.utc)):  # Thursday 16:00 in Beijing
        assert env.evaluate('deadline(4, "working_hours")', {}) == "2026-09-28T11:00:00+08:00"
        assert env.evaluate('deadline(4, "working_hours", fraction=0.8)', {}) == "2026-09-28T10:12:00+08:00"
        assert env.evaluate('deadline(n, unit, start)', {"n": 2, "unit": "working_days",
                                                          "start": "2026-09-30T10:00:00+08:00"}) \
            == "2026-10-09T10:00:00+08:00"
        assert env.evaluate("isoformat(add_working_hours(now(), 4))", {}) == "2026-09-28T11:00:00+08:00"
        assert env.evaluate('add_working_days("2026-09-30T10:00:00+08:00", 3)', {}) == at(2026, 10, 10, 10, 0)
        assert env.evaluate('working_hours_between("2026-09-24T16:00:00+08:00", now())', {}) == 0
        data = {}
        env.execute('limit = deadline(2, "working_days")\nspent = working_hours_between(now(), limit)', data)
        assert data == {"limit": "2026-09-29T16:00:00+08:00", "spent": 15.0}  # Monday, Tuesday


def test_script_engine_uses_the_calendar_it_is_given(tmp_path):
    path = write_calendar(tmp_path, {"years": {"2026": {"holidays": ["2026-09-28"]}}})
    custom = BusinessCalendar.from_file(path)
    engine = make_script_engine(custom)
    assert engine.environment.calendar is custom
    with case_clock(datetime(2026, 9, 24, 8, 0, tzinfo=timezone.utc)):
        assert engine.environment.evaluate('deadline(4, "working_hours")', {}) == "2026-09-29T11:00:00+08:00"
    assert make_script_engine().environment.calendar is not custom


def test_engine_passes_its_calendar_to_the_scripts(tmp_path):
    from workflows.engine import Engine
    from workflows.roles import RoleCatalogue

    custom = BusinessCalendar.from_file(write_calendar(tmp_path, {}))
    engine = Engine(RoleCatalogue.from_file(_ROOT / "bpmn" / "roles.json"), calendar=custom)
    assert engine.calendar is custom and engine.script_engine.environment.calendar is custom


# --- end to end: a BPMN boundary timer on the business calendar -------------------------------

TIMER_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs" targetNamespace="http://gridcase.test">
  <bpmn:process id="limited" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="handle" name="处置">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="red" attachedToRef="handle">
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition id="red_timer">
        <bpmn:timeDate xsi:type="bpmn:tFormalExpression">deadline(4, "working_hours")</bpmn:timeDate>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:boundaryEvent id="yellow" attachedToRef="handle" cancelActivity="false">
      <bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:timerEventDefinition id="yellow_timer">
        <bpmn:timeDate xsi:type="bpmn:tFormalExpression">deadline(4, "working_hours", fraction=0.8)</bpmn:timeDate>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="escalated"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="warned"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="handle" />
    <bpmn:sequenceFlow id="f2" sourceRef="handle" targetRef="done" />
    <bpmn:sequenceFlow id="f3" sourceRef="red" targetRef="escalated" />
    <bpmn:sequenceFlow id="f4" sourceRef="yellow" targetRef="warned" />
  </bpmn:process>
</bpmn:definitions>
"""


def _timer_values(workflow: BpmnWorkflow) -> dict[str, str]:
    return {t.task_spec.bpmn_id: t.internal_data.get("event_value")
            for t in workflow.get_tasks(state=TaskState.WAITING) if t.task_spec.bpmn_id in ("red", "yellow")}


def test_bpmn_boundary_timer_gets_its_due_time_from_the_business_calendar():
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(TIMER_BPMN.encode(), "limited.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("limited"), parser.get_subprocess_specs("limited"),
                            script_engine=make_script_engine())
    started = at(2026, 9, 24, 16, 0)  # Thursday before Mid-Autumn 2026
    with case_clock(started):
        workflow.do_engine_steps()
        workflow.refresh_timers()
    assert _timer_values(workflow) == {
        "red": "2026-09-28T11:00:00+08:00",     # 2 h Thursday + 2 h Monday
        "yellow": "2026-09-28T10:12:00+08:00",  # 80 %: 3.2 working hours
    }
    # Over the holiday nothing fires; on Monday the warning fires at 10:12, the deadline at 11:00.
    with case_clock(at(2026, 9, 27, 23, 0)):
        workflow.refresh_timers()
        workflow.do_engine_steps()
    assert set(_timer_values(workflow)) == {"red", "yellow"}
    with case_clock(at(2026, 9, 28, 10, 30)):
        workflow.refresh_timers()
        workflow.do_engine_steps()
    assert set(_timer_values(workflow)) == {"red"}
    with case_clock(at(2026, 9, 28, 11, 0, 1)):
        workflow.refresh_timers()
        workflow.do_engine_steps()
    assert workflow.is_completed()
    ended = {t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.COMPLETED)}
    assert {"warned", "escalated"} <= ended and "done" not in ended


# --- application configuration -------------------------------------------------------------

def _config(tmp_path: Path, **extra) -> dict:
    library = tmp_path / "library"
    library.mkdir(exist_ok=True)
    (library / "roles.json").write_text((_ROOT / "bpmn" / "roles.json").read_text(encoding="utf-8"), encoding="utf-8")
    from app.config import defaults

    return {**defaults(str(tmp_path)), "SQLALCHEMY_DATABASE_URI": "sqlite://", "PROCESS_LIBRARY": str(library), **extra}


def test_config_resolves_and_validates_the_calendar_file(tmp_path):
    from app.config import ConfigError, defaults, validate

    assert defaults(str(tmp_path))["CALENDAR_FILE"] is None
    config = _config(tmp_path)
    validate(config)
    assert config["CALENDAR_FILE"] is None  # no calendar.json in the library: built-in default

    (Path(config["PROCESS_LIBRARY"]) / "calendar.json").write_text('{"years": {}}', encoding="utf-8")
    config = _config(tmp_path)
    validate(config)
    assert config["CALENDAR_FILE"] == str(Path(config["PROCESS_LIBRARY"]) / "calendar.json")

    bad = write_calendar(tmp_path, {"years": {"2027": {"holidays": ["2027-02-30"]}}})
    with pytest.raises(ConfigError, match="invalid business calendar.*2027-02-30"):
        validate(_config(tmp_path, CALENDAR_FILE=str(bad)))
    with pytest.raises(ConfigError, match="not found"):
        validate(_config(tmp_path, CALENDAR_FILE=str(tmp_path / "nowhere.json")))


def test_shipped_library_calendar_is_valid_for_the_app():
    from app.config import PROJECT_ROOT, defaults, validate

    config = {**defaults("/tmp"), "SQLALCHEMY_DATABASE_URI": "sqlite://", "PROCESS_LIBRARY": str(PROJECT_ROOT / "bpmn")}
    validate(config)
    assert config["CALENDAR_FILE"] == str(PROJECT_ROOT / "bpmn" / "calendar.json")


def test_runtime_builds_the_engine_on_the_configured_calendar(tmp_path):
    from app.config import validate
    from app.runtime import Runtime

    path = write_calendar(tmp_path, {"working_periods": [["08:30", "12:00"], ["14:00", "17:30"]]})
    config = _config(tmp_path, CALENDAR_FILE=str(path))
    validate(config)
    runtime = Runtime.from_config(config)
    assert runtime.calendar.source == str(path) and runtime.calendar.working_periods[0] == ("08:30", "12:00")
    assert runtime.engine.script_engine.environment.calendar is runtime.calendar
