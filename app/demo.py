"""Demo data: one street, five communities with their grids, a user for every
role, and a few cases at different stages. Only seeds an empty database."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Callable

from sqlalchemy import func, select

from app.cases import service as cases
from app.db import commit, rollback
from app.errors import DomainError
from workflows.errors import EngineError
from app.db import db
from app.people import service as people
from app.people.models import User
from app.runtime import runtime
from app.timeutil import utcnow
from app.work import service as work

DEMO_PASSWORD = "gridcase-demo"

STREET = ("GL", "观澜街道")
COMMUNITIES = [
    ("GL-01", "桂花社区", ["桂花一网格", "桂花二网格", "桂花三网格"]),
    ("GL-02", "大和社区", ["大和一网格", "大和二网格"]),
    ("GL-03", "新澜社区", ["新澜一网格", "新澜二网格"]),
    ("GL-04", "库坑社区", ["库坑一网格", "库坑二网格"]),
    ("GL-05", "君子布社区", ["君子布一网格", "君子布二网格"]),
]

# username, display name, role, grid code (None = street), admin?
USERS = [
    ("admin", "系统管理员", None, None, True),
    ("wanggeyuan", "李网格（网格员）", "grid_member", "GL-01-G1", False),
    ("wanggezhang", "王网格长", "grid_leader", "GL-01", False),
    ("shequ", "陈社区（社区工作人员）", "community_staff", "GL-01", False),
    ("paiqian", "赵派遣（派遣员）", "dispatcher", None, False),
    ("zhibanzhang", "孙值班长", "duty_chief", None, False),
    ("bumen", "周城管（街道职能部门）", "department_staff", None, False),
    ("quji", "吴住建（区级部门）", "district_department", None, False),
    ("pianqu", "郑片区（片区负责人）", "area_lead", None, False),
    ("duban", "钱督办", "supervisor", None, False),
    ("shuji", "刘书记", "secretary", "GL-01", False),
    ("shenji", "何审计（审计员）", "auditor", None, False),
    ("liucheng", "冯流程（流程管理员）", "process_owner", None, False),
    ("jumin", "张居民", "resident", "GL-01-G1", False),
    ("dangzhibu", "桂花社区党支部", "party_branch", "GL-01", False),
    ("liangwei", "桂花社区两委会", "two_committees", "GL-01", False),
]

# Codes are the ones the incident process dispatches to (its assigned_department choices),
# so dispatched work reaches these units (DEPARTMENT_FIELDS in the configuration).
DEPARTMENTS = [
    ("urban_management", "观澜街道城市管理办公室", "street"),
    ("emergency_safety", "观澜街道应急管理办公室", "street"),
    ("law_enforcement", "观澜街道综合行政执法队", "street"),
    ("community_affairs", "观澜街道社区建设办公室", "street"),
    ("district_housing", "区住房和建设局", "district"),
    ("district_water", "区水务局", "district"),
]

# (scenario file, how many of its first steps to play, grid): cases of every procedure at
# different stages, driven through the same services as the API.
DEMO_SCENARIOS = [
    ("appeal_loop/scenarios/04_dispatch_department_take.json", 2, "GL-01-G1"),
    ("appeal_loop/scenarios/01_self_handled_satisfied.json", 0, "GL-01-G2"),
    ("appeal_loop/scenarios/04_dispatch_department_take.json", 99, "GL-01-G1"),
    # closed demands with their outcomes for the disclosure board
    ("appeal_loop/scenarios/02_rejected.json", 99, "GL-01-G1"),
    ("appeal_loop/scenarios/03_direct_answer.json", 99, "GL-01-G2"),
    ("four_deliberations/scenarios/01_one_shoulder_villagers_adults_completed.json", 3, "GL-01-G1"),
    ("incident_abcd/scenarios/04_a_closed.json", 0, "GL-01-G1"),
    ("incident_abcd/scenarios/07_b_rework_twice_to_c.json", 2, "GL-01-G1"),
    ("incident_abcd/scenarios/11_c_take_timeout_supervise_extension.json", 3, "GL-01-G2"),
]


def seed(echo: Callable[[str], None] = print) -> bool:
    if db.session.scalar(select(func.count()).select_from(User)):
        echo("demo: the database already has users; not seeding")
        return False
    street = people.add_grid_node(STREET[0], STREET[1], "street")
    nodes = {None: street}
    for code, name, grids in COMMUNITIES:
        community = people.add_grid_node(code, name, "community", street)
        nodes[code] = community
        for index, grid_name in enumerate(grids, start=1):
            grid = people.add_grid_node(f"{code}-G{index}", grid_name, "grid", community)
            nodes[grid.code] = grid
            for building in (1, 2):
                people.add_grid_node(f"{grid.code}-B{building}", f"{grid_name}{building}栋", "building", grid)

    departments = {
        code: people.add_department(code, name, level, street)
        for code, name, level in DEPARTMENTS
    }
    users: dict[str, User] = {}
    for username, display, role, grid_code, is_admin in USERS:
        user = people.create_user(username, display, DEMO_PASSWORD, is_admin=is_admin)
        if role:
            people.grant_role(user, role, nodes[grid_code])
        users[username] = user
    users["bumen"].department_id = departments["urban_management"].id
    users["quji"].department_id = departments["district_housing"].id
    # The grid member also reports from the second grid; the community staff also handle community work.
    people.grant_role(users["wanggeyuan"], "grid_member", nodes["GL-01-G2"])
    db.session.flush()
    token = people.issue_token(users["admin"], "demo")
    commit()

    _seed_cases(users)
    _seed_scenarios(users, echo)
    _seed_disclosure_board(users, echo)
    _seed_extension(users, echo)
    echo(f"demo: street {STREET[1]}, {len(COMMUNITIES)} communities, {len(nodes) - 1 - len(COMMUNITIES)} grids, "
         f"{len(DEPARTMENTS)} departments")
    echo(f"demo accounts (password for all: {DEMO_PASSWORD}):")
    for username, display, role, grid_code, _ in USERS:
        echo(f"  {username:<12} {display:<20} {role or 'admin'} @ {grid_code or STREET[0]}")
    echo(f"demo API token for admin (shown once): {token}")
    return True


def _seed_cases(users: dict[str, User]) -> None:
    """A few grid_quick cases at different stages, driven through the real services."""
    rt = runtime()
    start = utcnow() - timedelta(hours=30)
    steps = [
        ("register", "wanggeyuan", {"category": "garbage", "description": "小区东门垃圾堆放三天未清运", "location": "桂花一网格 3栋东侧", "verified": True}),
        ("review", "shequ", {"decision": "self", "opinion": "社区组织保洁队当日清运"}),
        ("community_handle", "shequ", {"result": "已清运并消杀"}),
        ("reinspect", "wanggeyuan", {"passed": True, "note": "现场已清理干净"}),
        ("close", "zhibanzhang", {"summary": "垃圾已清运，居民满意", "satisfaction": "satisfied"}),
    ]
    demo_cases = [
        ("桂花一网格垃圾堆放", "GL-01-G1", 5),
        ("桂花二网格道路破损", "GL-01-G2", 2),
        ("桂花一网格噪音扰民", "GL-01-G1", 1),
        ("桂花二网格公共设施损坏", "GL-01-G2", 0),
    ]
    for offset, (title, grid, completed_steps) in enumerate(demo_cases):
        at = start + timedelta(minutes=offset)
        case = cases.start_case(rt, process_id="grid_quick", title=title, grid_code=grid, data={}, actor=users["wanggeyuan"], at=at)
        commit()
        for index, (task, username, data) in enumerate(steps[:completed_steps]):
            item = next(i for i in work.list_work_items(users[username], work.WorkFilter(case=case.reference), page=1, page_size=10).items if i.spec_id == task)
            work.complete(rt, item.id, users[username], data, at=at + timedelta(hours=index + 1))
            commit()


def _seed_extension(users: dict[str, User], echo: Callable[[str], None]) -> None:
    """A case dispatched to the street department whose handler asked for an extension
    (pending at 延期审批 for 钱督办 / 孙值班长); then the deadline scan fills the inboxes."""
    from app.notifications.service import scan_deadlines
    from app.work import extensions

    rt = runtime()
    at = utcnow() - timedelta(hours=6)
    try:
        case = cases.start_case(rt, process_id="grid_quick", title="桂花一网格井盖缺失", grid_code="GL-01-G1", data={},
                                actor=users["wanggeyuan"], at=at)
        commit()
        for index, (task, username, data) in enumerate([
            ("register", "wanggeyuan", {"category": "facility", "description": "人行道井盖缺失，已临时围挡", "location": "桂花一网格 5栋南侧", "verified": True}),
            ("review", "shequ", {"decision": "dispatch", "opinion": "派城管办更换井盖"}),
        ]):
            item = next(i for i in work.list_work_items(users[username], work.WorkFilter(case=case.reference), page=1, page_size=10).items if i.spec_id == task)
            work.complete(rt, item.id, users[username], data, at=at + timedelta(hours=index + 1))
            commit()
        item = next(i for i in work.list_work_items(users["bumen"], work.WorkFilter(case=case.reference), page=1, page_size=10).items if i.spec_id == "department_handle")
        work.claim(item.id, users["bumen"], at=at + timedelta(hours=3))
        commit()
        extensions.request_extension(rt, item.id, users["bumen"], reason="井盖需定制，厂家供货需 3 个工作日",
                                     working_days=3, at=at + timedelta(hours=4))
        commit()
        scan_deadlines()
        commit()
    except (DomainError, EngineError) as exc:
        rollback()
        echo(f"demo: extension example not seeded: {exc}")


def _seed_disclosure_board(users: dict[str, User], echo: Callable[[str], None]) -> None:
    """The public disclosure board (/disclosure): resolutions in and past their posting window
    in 桂花社区, and last month's follow-up list for the supervisor."""
    from app.disclosure.demo import seed_board

    try:
        count = seed_board({"party_branch": users["dangzhibu"], "community_staff": users["shequ"]})
    except (DomainError, EngineError) as exc:
        rollback()
        echo(f"demo: disclosure board not seeded ({exc})")
        return
    echo(f"demo: {count} resolutions on the disclosure board")


def _seed_scenarios(users: dict[str, User], echo: Callable[[str], None]) -> None:
    from flask import current_app

    library = Path(current_app.config["PROCESS_LIBRARY"])
    by_role = {role: users[username] for username, _, role, _, _ in USERS if role}
    for relative, steps, grid in DEMO_SCENARIOS:
        path = library / relative
        if not path.is_file():
            echo(f"demo: scenario {relative} not found; skipped")
            continue
        scenario = json.loads(path.read_text(encoding="utf-8"))
        _play(scenario, steps, grid, by_role, users["wanggeyuan"])


def _play(scenario: dict, steps: int, grid: str, by_role: dict[str, User], reporter: User) -> None:
    """Start the scenario's case and complete its first ``steps`` user tasks; stop at the
    first step that needs the clock or a message (the demo runs on real time)."""
    rt = runtime()
    at = utcnow() - timedelta(days=2)
    data = scenario["start"].get("data", {})
    title = data.get("topic") or data.get("description") or scenario.get("name", "")
    case = cases.start_case(
        rt, process_id=scenario["process"], title=str(title)[:80], grid_code=grid, data=data, actor=reporter, at=at,
    )
    commit()
    played = 0
    for step in scenario.get("steps", []):
        if played >= steps:
            break
        if "expect" in step and len(step) == 1:
            continue
        if "complete" not in step:
            break
        user = by_role[step["role"]]
        found = work.list_work_items(user, work.WorkFilter(case=case.reference), page=1, page_size=20).items
        item = next((i for i in found if i.spec_id == step["complete"]), None)
        if item is None:
            break
        at += timedelta(minutes=40)
        try:
            work.complete(rt, item.id, user, step.get("data", {}), at=at)
        except (DomainError, EngineError):
            rollback()  # a step that only works on the scenario's clock: leave the case here
            break
        commit()
        played += 1
