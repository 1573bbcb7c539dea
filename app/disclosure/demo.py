"""Drive a 四议两公开 case through the real services up to (or past) its resolution
disclosure, with explicit times — used by the demo seed and by tests. Each step commits
(as a request would)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Mapping

from sqlalchemy import select

from app.cases import service as cases
from app.cases.models import Case
from app.db import commit, db
from app.people.models import User
from app.runtime import runtime
from app.work import service as work
from app.work.models import OPEN_STATES, WorkItem

PROCESS = "four_deliberations"


def _complete(case: Case, task: str, user: User, data: Mapping, at: datetime) -> None:
    item = db.session.scalar(select(WorkItem).where(
        WorkItem.case_id == case.id, WorkItem.spec_id == task, WorkItem.state.in_(OPEN_STATES)))
    if item is None:
        raise RuntimeError(f"case {case.reference}: no open {task} task")
    work.complete(runtime(), item.id, user, dict(data), at=at)
    commit()


def deliberate(
    users: Mapping[str, User], *, grid: str, disclosed_at: datetime, topic: str, resolution: str,
    votes: tuple[int, int, int, int, int] = (120, 86, 71, 9, 6), place: str = "社区居务公开栏",
    posting_days: int = 5, implemented: tuple[datetime, str] | None = None,
    result: tuple[datetime, str] | None = None, meeting_type: str = "residents_meeting",
) -> Case:
    """A case whose resolution is disclosed at ``disclosed_at`` (posting window
    ``posting_days`` days). With ``implemented`` = (when, progress) the posting timer fires and
    the implementation is recorded; with ``result`` = (when, text) the result is disclosed.
    ``users`` maps roles (party_branch, community_staff) to the people acting."""
    rt = runtime()
    start = disclosed_at - timedelta(days=13)
    branch, staff = users["party_branch"], users["community_staff"]
    case = cases.start_case(
        rt, process_id=PROCESS, title=topic, grid_code=grid, actor=None, at=start,
        data={"topic": topic, "description": resolution, "meeting_type": meeting_type, "one_shoulder": True,
              "party_members_total": 40, "posting_days": posting_days},
    )
    commit()
    _complete(case, "branch_proposal", branch, {
        "proposal_text": topic, "proposal_reason": "居民诉求集中，属于须经居民会议讨论决定的公益事项。"},
        start + timedelta(minutes=10))
    _complete(case, "send_plan", staff, {"plan_text": resolution, "plan_sent_on": (start + timedelta(minutes=20)).date().isoformat()},
              start + timedelta(minutes=20))
    _complete(case, "party_assembly", branch, {"due": 40, "present": 34, "votes_for": 30, "votes_against": 2, "abstain": 2},
              start + timedelta(days=1))
    _complete(case, "issue_notice", staff, {"notice_text": f"定于公告期满后召开会议，表决：{topic}", "meeting_place": "社区党群服务中心"},
              start + timedelta(days=1, hours=1))
    cases.fire_case_timers(rt, case.id, at=start + timedelta(days=11, hours=2))
    commit()
    due, present, votes_for, against, abstain = votes
    _complete(case, "meeting", staff, {"due": due, "present": present, "votes_for": votes_for, "votes_against": against,
                                       "abstain": abstain, "resolution_text": resolution}, start + timedelta(days=12))
    _complete(case, "resolution_disclosure", staff, {"disclosure_text": resolution, "disclosure_place": place}, disclosed_at)
    if implemented is not None:
        cases.fire_case_timers(rt, case.id, at=disclosed_at + timedelta(days=posting_days, hours=1))
        commit()
        when, progress = implemented
        _complete(case, "implementation", staff, {"progress": progress, "completed_on": when.date().isoformat()}, when)
        if result is not None:
            when, text = result
            _complete(case, "result_disclosure", staff, {"result_text": text, "result_place": place}, when)
    return case


def implement(reference: str, user: User, *, at: datetime, progress: str) -> None:
    """Fire the case's posting timer (if due) and record its implementation at ``at``."""
    case = cases.get_case(reference)
    cases.fire_case_timers(runtime(), case.id, at=at)
    commit()
    _complete(case, "implementation", user, {"progress": progress, "completed_on": at.date().isoformat()}, at)


def seed_board(users: Mapping[str, User], *, grid: str = "GL-01", now: datetime | None = None) -> int:
    """Demo: two resolutions in their posting window, two archived (one implemented with its
    result published, one still being implemented) in last month, and last month's follow-up
    list. ``users`` maps roles to the community's party branch and staff. Returns how many."""
    from zoneinfo import ZoneInfo

    from app.disclosure import service
    from app.timeutil import utcnow

    now = now or utcnow()
    local = now.astimezone(ZoneInfo("Asia/Shanghai"))
    last_month = (local.replace(day=1) - timedelta(days=1)).replace(day=1, hour=10, minute=0, second=0, microsecond=0)
    deliberate(users, grid=grid, disclosed_at=last_month + timedelta(days=4), topic="老旧小区楼道照明改造",
               resolution="同意使用社区公益金 8.6 万元更换 12 栋楼道声控照明，由社区统一采购安装。",
               votes=(150, 112, 98, 8, 6), implemented=(last_month + timedelta(days=16), "12 栋楼道照明已全部更换。"),
               result=(last_month + timedelta(days=18), "12 栋楼道声控照明已更换完毕并验收，实际支出 8.2 万元。"))
    deliberate(users, grid=grid, disclosed_at=last_month + timedelta(days=19), topic="社区菜市场周边停车秩序整治",
               resolution="同意在菜市场东侧划设临时停车位 30 个，早 6 点至 9 点限时停放。", votes=(150, 98, 80, 12, 6))
    deliberate(users, grid=grid, disclosed_at=now - timedelta(days=1), topic="小区南门加装电动车充电棚",
               resolution="同意使用公益金 12 万元在小区南门加装电动车充电棚（40 个充电位），公开招标施工。")
    deliberate(users, grid=grid, disclosed_at=now - timedelta(hours=3), topic="儿童游乐设施更新",
               resolution="同意更换中心花园老化的儿童游乐设施，费用由社区公益金列支，不超过 5 万元。",
               votes=(150, 104, 90, 10, 4))
    service.generate_followups(service.previous_month(now), at=now)
    commit()
    return 4
