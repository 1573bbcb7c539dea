"""Time limits of the shipped processes on a fake clock (issue 5).

Each test drives one shipped process through the real service path — start, tasks
completed by users holding the task's role, timers fired by ``app.jobs.fire_due_timers``
as the sweeper does — at chosen instants around 2026's weekends, public holidays and
make-up working days, and checks every warning (预警, yellow) and escalation (超期, red)
with ``CaseDriver.expect_fires``: the timer is due at the business-calendar instant written
out below (computed by hand from domain.md's limits and the State Council's 2026
schedule), a sweep one second earlier does nothing, the first sweep after it fires it in
exactly one ``timer_fired`` event, and sweeping again has no second effect. The work
items' due/warn times are checked against the same instants.

2026 (国务院办公厅 schedule, as the chinesecalendar package and bpmn/calendar.json have it):
清明 04-04..04-06 off (Sat-Mon); 劳动节 05-01..05-05 off, Sat 05-09 worked; 中秋 09-25..09-27
off, Sun 09-20 worked; 国庆 10-01..10-07 off, Sat 10-10 worked. Working hours 09:00-12:00
and 13:30-18:00 (7.5 h a day).

Every timer in the three BPMN files must be covered here: ``COVERS`` names the timers each
test fires, ``test_every_timer_is_covered`` parses the BPMN files, and each test checks
that it fired what it claims.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from tests.integration.time_limit_helpers import (
    LIBRARY, SECOND, CaseDriver, after_working_minutes, bpmn_timers, cst, working_minutes_between,
)

PROCESSES = ("incident_abcd", "appeal_loop", "four_deliberations")
COVERS: dict[str, set[str]] = {}


def covers(*timers: str):
    def mark(test):
        COVERS[test.__name__] = set(timers)
        return test
    return mark


def finish(case: CaseDriver, test_name: str) -> None:
    assert set(case.fired) == COVERS[test_name], (case.fired, COVERS[test_name])
    case.assert_no_duplicate_firings()


def test_every_timer_is_covered():
    declared = {timer for timers in COVERS.values() for timer in timers}
    in_bpmn = {f"{p}:{t}" for p in PROCESSES for t in bpmn_timers(p)}
    assert in_bpmn == declared, {"untested": sorted(in_bpmn - declared), "unknown": sorted(declared - in_bpmn)}


# The limits of domain.md (A 4 working hours, B 2 / C 5 / D 15 working days, sign-for 1 working
# hour, appeal 2 / 3 / 5 working days), at 100% and at the 80% warning, in working minutes.
DOMAIN_LIMITS = [(amount, unit, fraction) for amount, unit in [
    (4, "working_hours"), (1, "working_hours"), (2, "working_days"), (3, "working_days"), (5, "working_days"),
    (15, "working_days"), (1, "working_days"),
] for fraction in (1.0, 0.8)]


def test_the_business_calendar_agrees_with_an_independent_walk_over_2026():
    # 500 starts spread over 2026 (any minute, working or not): every deadline() the BPMN files use
    # lands on the business instant a plain minute walk over the published 2026 schedule gives.
    # Where several wall-clock instants share that business instant (a deadline reached at 12:00
    # or 18:00 is still reached at 13:30 or the next 09:00), no working time may lie between them.
    import random

    from workflows.calendar import BusinessCalendar

    calendar = BusinessCalendar.from_file(LIBRARY / "calendar.json")
    pick = random.Random(2026)
    first, span = cst("2026-01-01 00:00"), 340 * 24 * 60  # room left for 15 working days
    for _ in range(500):
        start = first + timedelta(minutes=pick.randrange(span))
        for amount, unit, fraction in DOMAIN_LIMITS:
            minutes = round(amount * fraction * (60 if unit == "working_hours" else 450))
            got = datetime.fromisoformat(calendar.deadline(amount, unit, start=start, fraction=fraction))
            expected = after_working_minutes(start, minutes)
            assert got >= expected and working_minutes_between(expected, got) == 0, \
                (start.isoformat(), amount, unit, fraction, got.isoformat(), expected.isoformat())


# -- incident_abcd --------------------------------------------------------------------------
REGISTER = {
    "source": "grid_patrol", "description": "商户在人行道堆放建材约10平方米，影响通行",
    "location": "观澜街道新澜社区环观中路66号", "grid_id": "GL-XL-012", "verified": True,
    "photo_before": "upload/2026/before.jpg", "disposition": "file",
}


@covers("incident_abcd:timer_a_warning", "incident_abcd:timer_a_deadline")
def test_incident_a_four_working_hours_across_qingming(app, world):
    # Registered Friday 2026-04-03 15:30, the afternoon before 清明 (04-04..04-06 off).
    # A (materials_piled): 4 working hours = 2.5 h on Friday (15:30-18:00) + 1.5 h on
    # Tuesday 04-07 -> 10:30; warning at 80% = 3.2 h = 2.5 h + 42 min -> Tuesday 09:42.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-04-03 15:00"))
    case.complete("register", {**REGISTER, "category": "materials_piled"}, at=cst("2026-04-03 15:30"))
    assert (case.data["level"], case.data["limit_amount"], case.data["limit_unit"]) == ("A", 4, "working_hours")
    warn, due = cst("2026-04-07 09:42"), cst("2026-04-07 10:30")
    item = case.item("grid_handle")
    assert (item["warn_at"], item["due_at"]) == (warn, due)

    assert case.light("grid_handle", warn - SECOND) == "green"
    case.expect_fires("timer_a_warning", warn)
    item = case.item("grid_handle")  # still open, still yellow: the warning does not move the limits
    assert (item["warn_at"], item["due_at"]) == (warn, due)
    assert [case.light("grid_handle", t) for t in (warn + SECOND, due - SECOND, due)] == ["yellow", "yellow", "red"]

    case.expect_fires("timer_a_deadline", due)
    assert case.open_tasks() == ["community_accept"]
    assert case.items("grid_handle", open_only=False)[0]["state"] == "cancelled"
    data = case.data
    assert (data["level"], data["reclass_trigger"], data["upgrade_count"]) == ("B", "deadline_expired", 1)
    finish(case, "test_incident_a_four_working_hours_across_qingming")


def _to_c(case: CaseDriver, category: str, *, registered, dispatched, department="urban_management") -> None:
    case.complete("register", {**REGISTER, "category": category}, at=registered)
    assert case.data["level"] == "C"
    case.complete("dispatcher_review", {"review_decision": "dispatch", "assigned_department": department,
                                        "review_opinion": "属街道职能部门职责，派遣承办"}, at=dispatched)


@covers("incident_abcd:timer_b_warning", "incident_abcd:timer_b_deadline")
def test_incident_b_two_working_days_over_the_national_day_make_up_saturday(app, world):
    # Accepted Friday 2026-10-09 10:00, right after 国庆 (10-01..10-07 off); Saturday 10-10 is
    # a make-up working day. B (neighbor_dispute): 2 working days -> Sat 10-10, Mon 10-12 10:00;
    # warning at 1.6 working days = Sat 10-10 10:00 + 4.5 h (10:00-12:00, 13:30-16:00) -> Sat 16:00.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-10-09 09:00"))
    case.complete("register", {**REGISTER, "category": "neighbor_dispute"}, at=cst("2026-10-09 09:30"))
    assert (case.data["level"], case.data["limit_amount"], case.data["limit_unit"]) == ("B", 2, "working_days")
    case.complete("community_accept", {"accept_decision": "accept", "accept_opinion": "社区受理"},
                  at=cst("2026-10-09 10:00"))
    warn, due = cst("2026-10-10 16:00"), cst("2026-10-12 10:00")
    item = case.item("community_handle")
    assert (item["warn_at"], item["due_at"]) == (warn, due)

    case.expect_fires("timer_b_warning", warn)
    assert case.open_tasks() == ["community_handle"]
    assert (case.item("community_handle")["warn_at"], case.item("community_handle")["due_at"]) == (warn, due)

    case.expect_fires("timer_b_deadline", due)
    assert case.open_tasks() == ["dispatcher_review"]  # escalated to C: the street command centre
    data = case.data
    assert (data["level"], data["reclass_trigger"], data["limit_amount"], data["limit_unit"]) \
        == ("C", "deadline_expired", 5, "working_days")
    finish(case, "test_incident_b_two_working_days_over_the_national_day_make_up_saturday")


@covers("incident_abcd:timer_take_warning", "incident_abcd:timer_take_deadline",
        "incident_abcd:timer_c_warning", "incident_abcd:timer_c_deadline")
def test_incident_c_sign_for_handling_and_supervision_around_mid_autumn(app, world):
    # Dispatched Friday 2026-09-18 17:30; Sunday 09-20 is a make-up working day, 中秋 09-25..27 off.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-09-18 16:00"))
    _to_c(case, "manhole_cover_damaged", registered=cst("2026-09-18 16:30"), dispatched=cst("2026-09-18 17:30"))
    assert (case.data["limit_amount"], case.data["limit_unit"]) == (2, "working_days")
    # Sign-for: 1 working hour = 30 min on Friday + 30 min on Sunday 09-20 -> 09:30;
    # warning at 48 min -> Sunday 09:18.
    take_warn, take_due = cst("2026-09-20 09:18"), cst("2026-09-20 09:30")
    assert (case.item("department_take")["warn_at"], case.item("department_take")["due_at"]) == (take_warn, take_due)
    # Handling, counted from dispatch: 2 working days -> Sun 09-20, Mon 09-21 17:30;
    # 1.6 days = Sun 09-20 17:30 + 4.5 h (0.5 Sun, 3 h Mon morning, 13:30-14:30) -> Mon 14:30.
    c_warn, c_due = cst("2026-09-21 14:30"), cst("2026-09-21 17:30")

    case.expect_fires("timer_take_warning", take_warn)
    assert case.open_tasks() == ["department_take"]
    case.expect_fires("timer_take_deadline", take_due)
    assert case.open_tasks() == ["department_handle"]  # not signed for in time: deemed signed for
    assert case.data["take_overdue_count"] == 1
    item = case.item("department_handle")
    assert (item["warn_at"], item["due_at"]) == (c_warn, c_due)

    case.expect_fires("timer_c_warning", c_warn)
    assert case.open_tasks() == ["department_handle"]
    case.expect_fires("timer_c_deadline", c_due)
    assert case.open_tasks() == ["supervise"]  # red light: 督办

    # The supervisor gives 2 more working days at Thursday 09-24 18:30 (after the last period:
    # counted from 18:00). Friday 09-25 is 中秋 -> Mon 09-28, Tue 09-29 18:00; warning at 1.6
    # days = Mon 18:00 + 4.5 h -> Tue 09-29 15:00.
    case.complete("supervise", {"supervise_method": "written", "supervise_instruction": "限期办结",
                                "supervise_days": 2}, at=cst("2026-09-24 18:30"))
    c_warn, c_due = cst("2026-09-29 15:00"), cst("2026-09-29 18:00")
    item = case.item("department_handle")
    assert (item["warn_at"], item["due_at"]) == (c_warn, c_due)
    case.expect_fires("timer_c_warning", c_warn)
    case.expect_fires("timer_c_deadline", c_due)
    assert case.open_tasks() == ["supervise"]
    assert case.data["supervise_count"] == 1
    finish(case, "test_incident_c_sign_for_handling_and_supervision_around_mid_autumn")


@covers("incident_abcd:timer_report_deadline")
def test_incident_whistle_report_within_24_hours_counts_holiday_hours(app, world):
    # 吹哨报到: ordinary whistle, departments report within 24 h (elapsed time, not working
    # time). Blown Friday 2026-04-03 17:00 -> due Saturday 04-04 17:00 although 清明 is a holiday.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-04-03 09:00"))
    _to_c(case, "gas_pipe_hazard", registered=cst("2026-04-03 09:30"), dispatched=cst("2026-04-03 10:00"),
          department="public_utilities")
    case.complete("department_take", {"take_decision": "take", "take_note": "已签收"}, at=cst("2026-04-03 10:20"))
    case.complete("department_handle", {"handle_action": "request_whistle", "whistle_reason": "需多部门联合处置"},
                  at=cst("2026-04-03 16:00"))
    case.complete("whistle", {"whistle_level": "ordinary", "whistle_departments": ["emergency_safety", "fire_rescue"],
                              "whistle_matter": "燃气立管锈蚀，请到场会商"}, at=cst("2026-04-03 17:00"))
    due = cst("2026-04-04 17:00")
    assert (case.data["report_limit_amount"], case.data["report_limit_unit"]) == (24, "hours")
    reports = case.items("department_report")
    assert [(r["due_at"], r["warn_at"]) for r in reports] == [(due, None), (due, None)]
    case.complete("department_report", {"arrived": True, "report_person": "应急办 李某", "report_opinion": "已到场"},
                  at=cst("2026-04-04 10:00"), which=0)

    case.expect_fires("timer_report_deadline", due)
    assert case.open_tasks() == ["joint_consultation"]
    assert case.data["report_timed_out"] is True
    assert [r["state"] for r in case.items("department_report", open_only=False)] == ["completed", "cancelled"]
    finish(case, "test_incident_whistle_report_within_24_hours_counts_holiday_hours")


@covers("incident_abcd:timer_district_overdue")
def test_incident_d_fifteen_working_days_over_labour_day_and_supervision(app, world):
    # Submitted to the district Thursday 2026-04-23 10:00. 15 working days: 04-24, 27, 28, 29,
    # 30, (劳动节 05-01..05 off) 05-06, 07, 08, Sat 05-09 (make-up), 11, 12, 13, 14, 15, 18
    # -> Monday 05-18 10:00. No warning timer: the district's reply is awaited, not worked here.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-04-23 09:00"))
    case.complete("register", {**REGISTER, "category": "illegal_building_existing"}, at=cst("2026-04-23 09:30"))
    assert (case.data["level"], case.data["limit_amount"], case.data["limit_unit"]) == ("D", 15, "working_days")
    case.complete("district_submit", {"district_department": "district_planning", "submit_note": "请认定并处置"},
                  at=cst("2026-04-23 10:00"))
    assert case.open_tasks() == []
    case.expect_fires("timer_district_overdue", cst("2026-05-18 10:00"))
    assert case.open_tasks() == ["supervise_d"]

    # 督办 gives 5 working days from Monday 05-18 14:00 -> 19, 20, 21, 22, 25 -> Mon 05-25 14:00.
    case.complete("supervise_d", {"supervise_method": "written", "supervise_instruction": "请5个工作日内答复",
                                  "supervise_days": 5}, at=cst("2026-05-18 14:00"))
    case.expect_fires("timer_district_overdue", cst("2026-05-25 14:00"))
    assert case.open_tasks() == ["supervise_d"]
    assert case.data["supervise_count"] == 1
    finish(case, "test_incident_d_fifteen_working_days_over_labour_day_and_supervision")


# -- appeal_loop -----------------------------------------------------------------------------
APPEAL = {"source": "resident", "category": "环境卫生", "description": "东门垃圾分类亭周边垃圾堆放多日无人清运。",
          "location": "幸福社区 3 号网格 东门垃圾分类亭", "contact_phone": "13800000000"}
GRID_REPORT = {"intake": "accept", "register_note": "现场核实属实，已拍照登记。"}


@covers("appeal_loop:timer_assign_warning", "appeal_loop:timer_assign_deadline")
def test_appeal_assign_two_working_days_across_qingming(app, world):
    # 网格报单 Friday 2026-04-03 16:00; 清明 04-04..06 off. 社区派单 within 2 working days:
    # Tue 04-07, Wed 04-08 16:00; warning at 1.6 days = Tue 16:00 + 4.5 h -> Wed 04-08 11:30.
    case = CaseDriver(app, "appeal_loop", {**APPEAL, "urgency": "normal"}, at=cst("2026-04-03 15:00"))
    case.complete("grid_report", GRID_REPORT, at=cst("2026-04-03 16:00"))
    warn, due = cst("2026-04-08 11:30"), cst("2026-04-08 16:00")
    assert (case.item("community_assign")["warn_at"], case.item("community_assign")["due_at"]) == (warn, due)

    case.expect_fires("timer_assign_warning", warn)
    assert case.data["assign_warned"] is True
    assert case.light("community_assign", warn + SECOND) == "yellow"
    assert (case.item("community_assign")["warn_at"], case.item("community_assign")["due_at"]) == (warn, due)
    case.expect_fires("timer_assign_deadline", due)
    assert case.open_tasks() == ["secretary_takes"]  # 书记直通车
    assert (case.data["secretary_reason"], case.data["overdue_count"]) == ("assign_overdue", 1)
    finish(case, "test_appeal_assign_two_working_days_across_qingming")


@covers("appeal_loop:timer_assign_warning", "appeal_loop:timer_assign_deadline")
def test_appeal_urgent_assign_two_hours_is_elapsed_time(app, world):
    # Urgent: 2 hours of elapsed time, even past office hours: Friday 2026-04-03 17:00 -> 19:00;
    # warning at 96 minutes -> 18:36.
    case = CaseDriver(app, "appeal_loop", {**APPEAL, "urgency": "urgent"}, at=cst("2026-04-03 16:50"))
    case.complete("grid_report", GRID_REPORT, at=cst("2026-04-03 17:00"))
    case.expect_fires("timer_assign_warning", cst("2026-04-03 18:36"))
    case.expect_fires("timer_assign_deadline", cst("2026-04-03 19:00"))
    assert case.open_tasks() == ["secretary_takes"]
    finish(case, "test_appeal_urgent_assign_two_hours_is_elapsed_time")


@covers("appeal_loop:timer_community_warning", "appeal_loop:timer_community_deadline")
def test_appeal_community_resolve_three_working_days_over_mid_autumn(app, world):
    # 社区派单 (self) Wednesday 2026-09-23 14:00; 中秋 09-25..27 off. 3 working days: Thu 09-24,
    # Mon 09-28, Tue 09-29 14:00; warning at 2.4 days = Mon 14:00 + 3 h -> Mon 09-28 17:00.
    case = CaseDriver(app, "appeal_loop", APPEAL, at=cst("2026-09-23 09:00"))
    case.complete("grid_report", GRID_REPORT, at=cst("2026-09-23 10:00"))
    case.complete("community_assign", {"assign_decision": "self", "assign_opinion": "由社区协调物业清运。"},
                  at=cst("2026-09-23 14:00"))
    warn, due = cst("2026-09-28 17:00"), cst("2026-09-29 14:00")
    assert (case.item("community_resolve")["warn_at"], case.item("community_resolve")["due_at"]) == (warn, due)
    case.expect_fires("timer_community_warning", warn)
    assert case.data["community_resolve_warned"] is True
    case.expect_fires("timer_community_deadline", due)
    assert case.open_tasks() == ["secretary_takes"]
    assert case.data["secretary_reason"] == "resolve_overdue"
    finish(case, "test_appeal_community_resolve_three_working_days_over_mid_autumn")


@covers("appeal_loop:timer_department_warning", "appeal_loop:timer_department_deadline")
def test_appeal_department_resolve_five_working_days_over_national_day(app, world):
    # 部门接单 Wednesday 2026-09-30 11:00; 国庆 10-01..07 off, Sat 10-10 worked. 5 working days:
    # 10-08, 10-09, 10-10, 10-12, 10-13 11:00; warning at 4 days -> Mon 10-12 11:00.
    case = CaseDriver(app, "appeal_loop", APPEAL, at=cst("2026-09-30 09:00"))
    case.complete("grid_report", GRID_REPORT, at=cst("2026-09-30 09:30"))
    case.complete("community_assign", {"assign_decision": "dispatch", "department": "街道城管办",
                                       "assign_opinion": "需城管执法处理。"}, at=cst("2026-09-30 10:00"))
    case.complete("department_take", {"take_decision": "take", "take_note": "已接单"}, at=cst("2026-09-30 11:00"))
    warn, due = cst("2026-10-12 11:00"), cst("2026-10-13 11:00")
    item = case.item("department_resolve")
    assert (item["warn_at"], item["due_at"]) == (warn, due)
    case.expect_fires("timer_department_warning", warn)
    assert case.data["department_resolve_warned"] is True
    case.expect_fires("timer_department_deadline", due)
    assert case.open_tasks() == ["secretary_takes"]
    assert (case.data["secretary_reason"], case.data["overdue_count"]) == ("resolve_overdue", 1)
    finish(case, "test_appeal_department_resolve_five_working_days_over_national_day")


# -- four_deliberations ------------------------------------------------------------------------
DELIBERATION = {"topic": "村道硬化及路灯安装工程", "description": "拟使用村集体收益硬化道路并安装路灯。",
                "party_members_total": 32, "posting_days": 5, "notice_days": 10, "result_disclosure_days": 7,
                "meeting_type": "representatives_meeting", "one_shoulder": True}


@covers("four_deliberations:timer_notice", "four_deliberations:timer_posting",
        "four_deliberations:timer_result_overdue")
def test_four_deliberations_notice_posting_and_result_disclosure_in_calendar_days(app, world):
    # Statutory periods are calendar days: holidays count (村民委员会组织法 art. 21: 10 days).
    case = CaseDriver(app, "four_deliberations", DELIBERATION, at=cst("2026-09-21 09:00"))
    case.complete("branch_proposal", {"proposal_text": "硬化村道 1.2 公里并安装路灯 40 盏。",
                                      "proposal_reason": "群众诉求集中。"}, at=cst("2026-09-21 10:00"))
    case.complete("send_plan", {"plan_text": "村道硬化、路灯安装，预算 86 万元。", "plan_sent_on": "2026-09-22"},
                  at=cst("2026-09-22 10:00"))
    case.complete("party_assembly", {"due": 30, "present": 25, "votes_for": 20, "votes_against": 3, "abstain": 2},
                  at=cst("2026-09-28 15:00"))
    # Notice issued Wednesday 09-30 10:00: 10 days over 国庆 -> Saturday 10-10 10:00.
    case.complete("issue_notice", {"notice_text": "公告期满后召开会议。", "meeting_place": "村委会大会议室",
                                   "planned_meeting_on": "2026-10-10"}, at=cst("2026-09-30 10:00"))
    assert case.open_tasks() == []
    case.expect_fires("timer_notice", cst("2026-10-10 10:00"))
    assert case.open_tasks() == ["meeting"]

    case.complete("meeting", {"due": 45, "present": 30, "votes_for": 16, "votes_against": 10, "abstain": 4,
                              "resolution_text": "同意硬化村道并安装路灯。"}, at=cst("2026-10-11 09:30"))
    # Resolution posted Monday 10-12 10:00: 5 days -> Saturday 10-17 10:00. An objection on
    # Wednesday is reviewed and dismissed; the window still ends at the original time.
    case.complete("resolution_disclosure", {"disclosure_text": "决议：同意硬化村道并安装路灯。",
                                            "disclosure_place": "村务公开栏"}, at=cst("2026-10-12 10:00"))
    posting_due = cst("2026-10-17 10:00")
    assert case.waiting() == {"timer_posting": posting_due}
    case.message("objection_received", {"objector": "村民张某", "content": "路灯间距过大。"}, at=cst("2026-10-14 15:00"))
    assert case.waiting() == {}
    assert case.fire(cst("2026-10-15 10:00")) == 0  # under review: nothing is waiting to fire
    case.complete("objection_review", {"review_decision": "dismiss", "review_reason": "间距符合规范。"},
                  at=cst("2026-10-15 16:00"))
    assert case.open_tasks() == [] and case.waiting() == {"timer_posting": posting_due}
    case.expect_fires("timer_posting", posting_due, later=cst("2026-10-18 10:00"))
    assert case.open_tasks() == ["implementation"]

    # Implementation reported Friday 2026-12-25 16:00: result disclosure within 7 days ->
    # Friday 2027-01-01 16:00 (calendar days: 2027's missing holiday data does not matter).
    case.complete("implementation", {"progress": "已完工并验收合格。", "completed_on": "2026-12-25"},
                  at=cst("2026-12-25 16:00"))
    due = cst("2027-01-01 16:00")
    assert (case.item("result_disclosure")["warn_at"], case.item("result_disclosure")["due_at"]) == (None, due)
    case.expect_fires("timer_result_overdue", due)
    assert case.open_tasks() == ["supervise"]
    # 督办 Monday 2027-01-04 09:00: a new 7-day period -> 2027-01-11 09:00.
    case.complete("supervise", {"supervise_instruction": "请三日内公开实施结果。"}, at=cst("2027-01-04 09:00"))
    assert case.item("result_disclosure")["due_at"] == cst("2027-01-11 09:00")
    case.expect_fires("timer_result_overdue", cst("2027-01-11 09:00"))
    assert case.open_tasks() == ["supervise"]
    finish(case, "test_four_deliberations_notice_posting_and_result_disclosure_in_calendar_days")


@covers("incident_abcd:timer_c_warning", "incident_abcd:timer_c_deadline")
def test_incident_c_extension_moves_both_limits_over_mid_autumn(app, world):
    # Dispatched Monday 2026-09-21 10:00 (manhole_cover_damaged, 2 working days): due Wednesday
    # 09-23 10:00, warning at 1.6 days = Tue 09-22 10:00 + 4.5 h -> Tuesday 16:00.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-09-21 09:00"))
    _to_c(case, "manhole_cover_damaged", registered=cst("2026-09-21 09:30"), dispatched=cst("2026-09-21 10:00"))
    case.complete("department_take", {"take_decision": "take", "take_note": "已签收"}, at=cst("2026-09-21 10:10"))
    item = case.item("department_handle")
    assert (item["warn_at"], item["due_at"]) == (cst("2026-09-22 16:00"), cst("2026-09-23 10:00"))
    case.complete("department_handle", {"handle_action": "request_extension", "extension_days": 3,
                                        "extension_reason": "井盖需定制"}, at=cst("2026-09-22 11:00"))
    case.complete("extension_approve", {"extension_approved": True, "extension_opinion": "同意延期3个工作日"},
                  at=cst("2026-09-22 11:30"))
    # Extended by 3 working days from the old limit: Thu 09-24, (中秋 09-25..27) Mon 09-28,
    # Tue 09-29 10:00. The warning stays at 80% of the whole working time from dispatch:
    # 37.5 h x 0.8 = 30 h from Mon 09-21 10:00 (6.5 + 7.5 + 7.5 + 7.5 = 29 h to Thursday
    # evening, then 1 h) -> Monday 09-28 10:00.
    warn, due = cst("2026-09-28 10:00"), cst("2026-09-29 10:00")
    item = case.item("department_handle")
    assert (item["warn_at"], item["due_at"]) == (warn, due)
    assert case.fire(cst("2026-09-23 10:00:01")) == 0  # the old limits are gone
    case.expect_fires("timer_c_warning", warn)
    case.expect_fires("timer_c_deadline", due)
    assert case.open_tasks() == ["supervise"]
    assert (case.data["extension_count"], case.data["c_due_at"]) == (1, "2026-09-29T10:00:00+08:00")
    cancelled = [t["timer"] for t in case.timers("cancelled")]
    assert sorted(cancelled) == ["timer_c_deadline", "timer_c_warning", "timer_take_deadline", "timer_take_warning"]
    finish(case, "test_incident_c_extension_moves_both_limits_over_mid_autumn")


@covers("incident_abcd:timer_report_deadline")
def test_incident_emergency_whistle_report_within_30_minutes(app, world):
    # Emergency whistle Friday 2026-04-03 17:50: 30 minutes of elapsed time -> 18:20.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-04-03 09:00"))
    _to_c(case, "gas_pipe_hazard", registered=cst("2026-04-03 09:30"), dispatched=cst("2026-04-03 10:00"),
          department="public_utilities")
    case.complete("department_take", {"take_decision": "take", "take_note": "已签收"}, at=cst("2026-04-03 10:20"))
    case.complete("department_handle", {"handle_action": "request_whistle", "whistle_reason": "燃气泄漏风险"},
                  at=cst("2026-04-03 17:40"))
    case.complete("whistle", {"whistle_level": "emergency", "whistle_departments": ["emergency_safety", "fire_rescue"],
                              "whistle_matter": "请立即到场"}, at=cst("2026-04-03 17:50"))
    case.expect_fires("timer_report_deadline", cst("2026-04-03 18:20"))
    assert case.open_tasks() == ["joint_consultation"]
    finish(case, "test_incident_emergency_whistle_report_within_30_minutes")


@covers("incident_abcd:timer_a_warning", "incident_abcd:timer_a_deadline")
def test_incident_a_timers_missed_during_downtime_fire_once_on_the_next_sweep(app, world):
    # Registered Thursday 2026-06-18 16:00; 端午 06-19..21 off. 4 working hours: 2 h on Thursday
    # + 2 h on Monday 06-22 -> 11:00; warning at 3.2 h -> Monday 10:12. No sweep runs until
    # Monday 11:30 (workers down over the holiday): that sweep fires both, once.
    case = CaseDriver(app, "incident_abcd", {}, at=cst("2026-06-18 15:00"))
    case.complete("register", {**REGISTER, "category": "materials_piled"}, at=cst("2026-06-18 16:00"))
    warn, due = cst("2026-06-22 10:12"), cst("2026-06-22 11:00")
    assert case.waiting() == {"timer_a_warning": warn, "timer_a_deadline": due}
    before = case.events()
    late = cst("2026-06-22 11:30")
    assert case.fire(late) == 1
    new = case.events()[len(before):]
    assert [e["kind"] for e in new] == ["timer_fired"] and new[0]["at"] == late
    fired = {t["timer"]: datetime.fromisoformat(t["due_at"]) for t in new[0]["payload"]["timers"]}
    assert fired == {"timer_a_warning": warn, "timer_a_deadline": due}  # each with its own due time
    assert sorted((t["timer"], t["state"], t["fired_at"]) for t in case.timers(None)) == [
        ("timer_a_deadline", "fired", late), ("timer_a_warning", "fired", late)]
    assert case.open_tasks() == ["community_accept"]
    assert case.fire(late) == 0 and case.fire(cst("2026-06-23 09:00")) == 0
    assert len(case.events()) == len(before) + 1
    case.fired.extend(["incident_abcd:timer_a_warning", "incident_abcd:timer_a_deadline"])
    finish(case, "test_incident_a_timers_missed_during_downtime_fire_once_on_the_next_sweep")


@covers("appeal_loop:timer_assign_warning", "appeal_loop:timer_assign_deadline")
def test_a_failed_firing_changes_nothing_and_the_next_sweep_fires_once(app, world, monkeypatch):
    # The sweep at the warning time fails while writing (database gone): it is rolled back, the
    # timer stays waiting, and the next sweep fires it once, recording the original due time.
    # The rq nudge at the deadline, run late and then once more, fires once as well.
    from sqlalchemy.exc import OperationalError

    from app.cases import service as cases
    from app.jobs import fire_case_timers_job

    case = CaseDriver(app, "appeal_loop", {**APPEAL, "urgency": "normal"}, at=cst("2026-04-03 15:00"))
    case.complete("grid_report", GRID_REPORT, at=cst("2026-04-03 16:00"))
    warn, due = cst("2026-04-08 11:30"), cst("2026-04-08 16:00")
    waiting, before = case.waiting(), case.events()

    real_append = cases.append_event

    def lost_connection(case_row, kind, *args, **kwargs):
        if kind == "timer_fired":
            raise OperationalError("INSERT INTO case_events", {}, Exception("server closed the connection"))
        return real_append(case_row, kind, *args, **kwargs)

    monkeypatch.setattr(cases, "append_event", lost_connection)
    assert case.fire(warn + SECOND) == 0
    monkeypatch.setattr(cases, "append_event", real_append)
    assert case.events() == before and case.waiting() == waiting
    assert "assign_warned" not in case.data and case.item("community_assign")["warn_at"] == warn

    next_sweep = warn + timedelta(seconds=30)
    assert case.fire(next_sweep) == 1
    (event,) = case.events()[len(before):]
    assert (event["kind"], event["at"]) == ("timer_fired", next_sweep)
    assert [(t["timer"], datetime.fromisoformat(t["due_at"])) for t in event["payload"]["timers"]] \
        == [("timer_assign_warning", warn)]
    assert case.data["assign_warned"] is True and case.waiting() == {"timer_assign_deadline": due}
    case.fired.append("appeal_loop:timer_assign_warning")

    # The deadline's rq job runs on the wall clock, long after 2026-04-08 16:00: it fires the
    # deadline once; the same job delivered twice (rq retry, a second worker) does nothing.
    count = len(case.events())
    with app.app_context():
        assert fire_case_timers_job(case.id) is True
        assert fire_case_timers_job(case.id) is False
    new = case.events()[count:]
    assert [e["kind"] for e in new] == ["timer_fired"]
    assert [(t["timer"], datetime.fromisoformat(t["due_at"])) for t in new[0]["payload"]["timers"]] \
        == [("timer_assign_deadline", due)]
    assert case.open_tasks() == ["secretary_takes"] and case.waiting() == {}
    case.fired.append("appeal_loop:timer_assign_deadline")
    finish(case, "test_a_failed_firing_changes_nothing_and_the_next_sweep_fires_once")
