"""Governance metrics on a seeded set of cases, played through the service layer on a fake clock,
against values computed by hand (see the comments next to each case).

Period under test: March 2026 (Asia/Shanghai); the previous period is February 2026.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import TEST_PEOPLE

CST = timezone(timedelta(hours=8))
BPMN = Path(__file__).resolve().parents[2] / "bpmn"
ROLE_USER = {role: username for username, (role, _grid) in TEST_PEOPLE.items() if username not in ("member2", "chief2")}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CST)


def steps_of(relative: str) -> list[dict]:
    return [s for s in json.loads((BPMN / relative).read_text(encoding="utf-8"))["steps"] if "complete" in s]


class Player:
    """Drives cases through the services like users would, committing once per action."""

    def __init__(self):
        from app.runtime import runtime

        self.rt = runtime()

    def user(self, username):
        from app.people.service import user_by_username

        return user_by_username(username)

    def start(self, process: str, at: datetime, *, grid="S-C1-G1", data=None, by="member"):
        from app.cases import service as cases
        from app.db import commit

        case = cases.start_case(self.rt, process_id=process, title="测试", grid_code=grid, data=data or {},
                                actor=self.user(by), at=at)
        commit()
        return case.id

    def complete(self, case_id: int, task: str, data: dict, at: datetime, *, by: str | None = None):
        from sqlalchemy import select

        from app.db import commit, db
        from app.work import service as work
        from app.work.models import OPEN_STATES, WorkItem

        item = db.session.scalar(select(WorkItem).where(
            WorkItem.case_id == case_id, WorkItem.spec_id == task, WorkItem.state.in_(OPEN_STATES)))
        assert item is not None, f"{task} is not open"
        work.complete(self.rt, item.id, self.user(by or ROLE_USER[item.role]), data, at=at)
        commit()

    def fire(self, case_id: int, at: datetime):
        from app.cases import service as cases
        from app.db import commit

        fired = cases.fire_case_timers(self.rt, case_id, at=at)
        commit()
        return fired

    def play(self, case_id: int, steps: list[dict], at: datetime, *, every=timedelta(minutes=10)):
        for step in steps:
            at += every
            self.complete(case_id, step["complete"], step["data"], at)
        return at


A_STEPS = steps_of("incident_abcd/scenarios/04_a_closed.json")           # register, grid_handle(closed)
B_STEPS = steps_of("incident_abcd/scenarios/07_b_rework_twice_to_c.json")
C_STEPS = steps_of("incident_abcd/scenarios/11_c_take_timeout_supervise_extension.json")
PASS_B = steps_of("incident_abcd/scenarios/08_b_warning_timeout_c_return.json")[-1]   # reinspect_b passed
INVALID = steps_of("incident_abcd/scenarios/01_invalid.json")


def seed(app) -> dict[str, int]:
    """The cases of March 2026 (and one each side). Hand-computed facts in the comments."""
    p = Player()
    ids: dict[str, int] = {}
    # 1. A, reported Mon 03-02 09:00, closed 09:50 on the spot: 0.83 working hours, on time.
    ids["a"] = p.start("incident_abcd", t("2026-03-02T09:00"))
    p.play(ids["a"], A_STEPS[:1], t("2026-03-02T09:00"))
    p.complete(ids["a"], "grid_handle", A_STEPS[1]["data"], t("2026-03-02T09:50"))
    # 2. B with one failed re-inspection (rework), Tue 03-03 09:00 -> closed 10:00 (1.0 wh); handled 09:30.
    ids["b"] = p.start("incident_abcd", t("2026-03-03T09:00"))
    at = p.play(ids["b"], B_STEPS[:5], t("2026-03-03T09:00"))
    p.complete(ids["b"], "reinspect_b", PASS_B["data"], at + timedelta(minutes=10))
    # 3. C dispatched to urban_management, extension approved, closed on time, rated satisfied:
    #    Wed 03-04 09:00 -> closed 10:30 (1.5 wh); handled (feedback ready) 10:00.
    ids["c"] = p.start("incident_abcd", t("2026-03-04T09:00"))
    c_steps = [C_STEPS[0], C_STEPS[1], B_STEPS[7]] + C_STEPS[3:]
    p.play(ids["c"], c_steps, t("2026-03-04T09:00"))
    # 4. A reported Fri 03-20, never handled: yellow at 11:00 (warning 10:46), red at 12:00
    #    (deadline 11:10) -> escalated to B, still open at the end of March.
    ids["overdue"] = p.start("incident_abcd", t("2026-03-20T09:00"))
    p.play(ids["overdue"], A_STEPS[:1], t("2026-03-20T09:00"))
    assert p.fire(ids["overdue"], t("2026-03-20T11:00")) is not None
    assert p.fire(ids["overdue"], t("2026-03-20T12:00")) is not None
    # 5. B reported before the period (Fri 02-27 17:00), closed Mon 03-02 09:30: Fri 1.0 + Sat 02-28
    #    (a make-up working day) 7.5 + Mon 0.5 = 9.0 working hours.
    ids["before"] = p.start("incident_abcd", t("2026-02-27T17:00"))
    p.play(ids["before"], B_STEPS[:2], t("2026-02-27T17:00"))
    p.complete(ids["before"], "community_handle", B_STEPS[2]["data"], t("2026-03-02T09:00"))
    p.complete(ids["before"], "reinspect_b", PASS_B["data"], t("2026-03-02T09:30"))
    # 6. Not filed (not verified), Thu 03-05.
    ids["invalid"] = p.start("incident_abcd", t("2026-03-05T09:00"))
    p.play(ids["invalid"], INVALID, t("2026-03-05T09:00"))
    # 7. grid_quick, rated unsatisfied, Fri 03-06 09:00 -> closed 09:50; handled (reinspect ready) 09:30.
    from tests.grid_quick_data import CLOSE, HANDLE, REGISTER, REINSPECT, REVIEW_SELF

    ids["quick"] = p.start("grid_quick", t("2026-03-06T09:00"))
    p.play(ids["quick"], [
        {"complete": "register", "data": REGISTER}, {"complete": "review", "data": REVIEW_SELF},
        {"complete": "community_handle", "data": HANDLE}, {"complete": "reinspect", "data": REINSPECT},
        {"complete": "close", "data": {**CLOSE, "satisfaction": "unsatisfied"}},
    ], t("2026-03-06T09:00"))
    # 8. A in the other community (C2), Mon 03-09 09:00 -> 09:50.
    ids["c2"] = p.start("incident_abcd", t("2026-03-09T09:00"), grid="S-C2-G1", by="member2")
    p.complete(ids["c2"], "register", A_STEPS[0]["data"], t("2026-03-09T09:10"), by="member2")
    p.complete(ids["c2"], "grid_handle", A_STEPS[1]["data"], t("2026-03-09T09:50"), by="member2")
    # 9. A in April across the Qingming holiday (04-04..04-06): Fri 17:20 -> Tue 04-07 09:30 = 0.67 + 0.5 h.
    ids["holiday"] = p.start("incident_abcd", t("2026-04-03T17:20"))
    p.complete(ids["holiday"], "register", A_STEPS[0]["data"], t("2026-04-03T17:30"))
    p.complete(ids["holiday"], "grid_handle", A_STEPS[1]["data"], t("2026-04-07T09:30"))
    return ids


def play_deliberation(p: Player, start: datetime) -> int:
    """four_deliberations scenario 04 on its own clock (tallies 9/9, 19/30 no quorum, 20/30, 30/45;
    the result disclosure overdue then done)."""
    from workflows.scenarios import load_scenario

    scenario = load_scenario(BPMN / "four_deliberations/scenarios/04_assembly_no_quorum_representatives_supervised.json")
    case_id = p.start("four_deliberations", start, data=dict(scenario.start_data), by="community")
    now = start
    for step in scenario.steps:
        if step.kind == "complete":
            now = step.at or now + (step.after or timedelta(minutes=10))
            p.complete(case_id, step.target, dict(step.data), now)
        elif step.kind == "advance":
            now = step.advance_to or now + step.advance_by
            p.fire(case_id, now)
    return case_id


@pytest.fixture
def seeded(app, world):
    with app.app_context():
        ids = seed(app)
        from app.dashboard import service
        from app.db import commit

        service.catch_up()
        commit()
        yield ids


def figures(app, *, period="2026-03", username="admin", **filters):
    from app.dashboard import metrics, service
    from app.people.service import user_by_username

    user = user_by_username(username)
    chosen = service.parse_filters({"period": period, **filters}, user)
    counts = service.counts(user, chosen, chosen.period)
    return metrics.compute(counts), counts


def approx(value):
    return pytest.approx(value, abs=1e-6)


def test_march_figures_match_hand_computed_values(app, seeded):
    values, counts = figures(app)
    assert counts["reported"] == 7           # cases 1,2,3,4,6,7,8 (5 is February, 9 is April)
    assert values["reported"] == 7
    assert values["filing_rate"] == approx(6 / 7)          # 6 not verified; 5's intake was in February
    assert values["dispatch_rate"] == approx(1.0)
    # handled 1,2,3,5,7,8; due and not handled: 4
    assert (counts["handled"], counts["should_handle"]) == (6, 7)
    assert values["handling_rate"] == approx(6 / 7)
    assert values["ontime_handling_rate"] == approx(6 / 7)
    assert values["overdue_pending_rate"] == approx(1 / 7)
    # closed 1,2,3,5,7,8 + due in March and still open: 4 -> 应结案 7
    assert (counts["closed"], counts["should_close"]) == (6, 7)
    assert values["closing_rate"] == approx(6 / 7)
    assert values["ontime_closing_rate"] == approx(6 / 7)
    assert values["rework_rate"] == approx(1 / 7)
    assert values["extension_rate"] == approx(1 / 7)
    assert values["shelving_rate"] == approx(0)
    assert (values["yellow"], values["red"], values["red_open"]) == (1, 1, 1)
    # closed with a class: 1 A, 2 B, 3 C, 5 B, 8 A (grid_quick has none)
    assert values["local_resolution_rate"] == approx(4 / 5)
    assert values["within_street_rate"] == approx(1.0)
    assert values["grid_self_rate"] == approx(2 / 5)
    assert values["upgrade_rate"] == approx(0)       # case 4 was upgraded but is still open
    assert values["whistle_rate"] == approx(0)
    assert values["satisfaction_rate"] == approx(1 / 2)  # 3 satisfied, 7 unsatisfied
    # 0.8333 + 1.0 + 1.5 + 9.0 + 0.8333 + 0.8333
    assert values["mean_hours"] == approx(14.0 / 6)
    for key in ("attendance_rate", "quorum_rate", "resolution_pass_rate", "disclosure_ontime_rate"):
        assert values[key] is None


def test_handling_time_by_class_with_p90(app, seeded):
    from app.dashboard import service
    from app.people.service import user_by_username

    user = user_by_username("admin")
    hours = {row["level"]: row for row in service.handling_hours(user, service.parse_filters({"period": "2026-03"}, user))}
    assert hours["A"]["n"] == 2 and hours["A"]["mean"] == approx(5 / 6)
    assert hours["B"]["n"] == 2 and hours["B"]["mean"] == approx(5.0) and hours["B"]["p90"] == approx(9.0)
    assert hours["C"]["mean"] == approx(1.5)
    assert hours["D"]["n"] == 0 and hours["D"]["mean"] is None
    assert hours["—"]["n"] == 1


def test_holiday_inside_handling_time(app, seeded):
    values, counts = figures(app, period="2026-04")
    assert counts["closed"] == 1
    assert values["mean_hours"] == approx(2 / 3 + 0.5)   # Qingming 04-04..04-06 not counted


def test_previous_period_and_empty_period(app, seeded):
    values, counts = figures(app, period="2026-02")
    assert counts["reported"] == 1 and values["filing_rate"] == approx(1.0)
    assert counts["should_close"] == 0
    assert values["closing_rate"] is None and values["satisfaction_rate"] is None  # no division by zero
    empty, _ = figures(app, period="2025-07")
    assert empty["reported"] == 0 and all(v is None for k, v in empty.items()
                                          if k not in ("reported", "yellow", "red", "red_open"))


def test_quarter_and_custom_periods(app, seeded):
    values, counts = figures(app, period="2026-Q1")
    assert counts["reported"] == 8 and counts["closed"] == 6
    custom, counts = figures(app, period="custom", **{"from": "2026-03-02", "to": "2026-03-03"})
    assert counts["reported"] == 2 and counts["closed"] == 3   # 1, 2 and 5 (closed 03-02)


def test_filters_department_process_class_grid(app, seeded):
    values, counts = figures(app, department="urban_management")
    assert (counts["reported"], counts["closed"], counts["extended"]) == (1, 1, 1)
    _, counts = figures(app, process="grid_quick")
    assert (counts["reported"], counts["closed"], counts["rated"]) == (1, 1, 1)
    _, counts = figures(app, level="B")
    assert counts["closed"] == 2 and counts["due_unclosed"] == 1   # 2, 5 closed at B; 4 escalated to B
    _, counts = figures(app, grid="S-C2")
    assert (counts["reported"], counts["closed"]) == (1, 1)


def test_scope_of_a_community_user(app, seeded):
    from app.dashboard import service
    from app.people.service import user_by_username

    _, counts = figures(app, username="community")   # community_staff at S-C1
    assert counts["reported"] == 6                    # everything but the C2 case
    user = user_by_username("community")
    ranked = service.rankings(user, service.parse_filters({"period": "2026-03"}, user))
    assert [row["code"] for row in ranked["communities"]] == ["S-C1"]
    admin = user_by_username("admin")
    ranked = service.rankings(admin, service.parse_filters({"period": "2026-03"}, admin))
    by_code = {row["code"]: row for row in ranked["communities"]}
    assert by_code["S-C2"]["ontime_closing_rate"] == approx(1.0)
    assert by_code["S-C1"]["ontime_closing_rate"] == approx(5 / 6)
    assert [row["code"] for row in ranked["communities"]] == ["S-C2", "S-C1"]
    assert {row["code"] for row in ranked["departments"]} == {"urban_management"}


def test_bad_filters_are_invalid_input(app, seeded):
    from app.dashboard import service
    from app.errors import InvalidInput
    from app.people.service import user_by_username

    user = user_by_username("community")
    for args in ({"period": "2026-13"}, {"period": "last year"}, {"period": "custom", "from": "2026-02-30", "to": "2026-03-01"},
                 {"period": "custom", "from": "2026-03-05", "to": "2026-03-01"}, {"level": "E"}, {"grid": "S-C2"},
                 {"grid": "nowhere"}, {"process": "nope"}):
        with pytest.raises(InvalidInput):
            service.parse_filters(args, user)


def test_deliberation_attendance_quorum_resolution_disclosure(app, world):
    with app.app_context():
        from app.dashboard import service
        from app.db import commit

        play_deliberation(Player(), t("2026-03-05T09:00"))
        service.catch_up()
        commit()
        values, counts = figures(app, period="2026-03")
        # tallies 9/9, 19/30 (no quorum), 20/30, 30/45 -> 78/114, quorum 3 of 4; the meeting passed
        assert (counts["attendance_present"], counts["attendance_due"]) == (78, 114)
        assert values["attendance_rate"] == approx(78 / 114)
        assert values["quorum_rate"] == approx(3 / 4)
        assert values["resolution_pass_rate"] == approx(1.0)
        assert values["disclosure_ontime_rate"] is None       # nothing due in March
        values, counts = figures(app, period="2026-Q2")
        assert counts["should_disclose"] == 1 and values["disclosure_ontime_rate"] == approx(0.0)


def test_rebuild_gives_the_same_rows_and_catch_up_follows_new_events(app, seeded):
    from sqlalchemy import select

    from app.dashboard import facts
    from app.dashboard.models import CaseFacts
    from app.db import commit, db
    from app.runtime import runtime

    def snapshot():
        return {row.case_id: {c.name: getattr(row, c.name) for c in CaseFacts.__table__.columns}
                for row in db.session.scalars(select(CaseFacts))}

    before = snapshot()
    assert facts.rebuild(runtime().calendar) == len(before)
    commit()
    db.session.expire_all()
    assert snapshot() == before
    assert not facts.is_stale()
    # a new event on the open case: the row is caught up on the next look
    Player().complete(seeded["overdue"], "community_accept",
                      {"accept_decision": "accept", "accept_opinion": "受理"}, t("2026-04-01T09:00"))
    assert facts.is_stale()
    from app.dashboard import service

    assert service.catch_up() == 1
    commit()
    row = db.session.get(CaseFacts, seeded["overdue"])
    assert row.level == "B" and row.upgrade_count == 1 and row.outcome == "open"


def test_cli_rebuild_and_refresh(app, seeded):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["dashboard", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "folded 9 case(s)" in result.output
    result = runner.invoke(args=["dashboard", "refresh"])
    assert result.exit_code == 0 and "folded 0 case(s)" in result.output
