"""Demo data: one street, five communities with their grids, a user for every
role, and a few cases at different stages. Only seeds an empty database."""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

from sqlalchemy import func, select

from app.cases import service as cases
from app.db import commit
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

    users: dict[str, User] = {}
    for username, display, role, grid_code, is_admin in USERS:
        user = people.create_user(username, display, DEMO_PASSWORD, is_admin=is_admin)
        if role:
            people.grant_role(user, role, nodes[grid_code])
        users[username] = user
    # The grid member also reports from the second grid; the community staff also handle community work.
    people.grant_role(users["wanggeyuan"], "grid_member", nodes["GL-01-G2"])
    db.session.flush()
    token = people.issue_token(users["admin"], "demo")
    commit()

    _seed_cases(users)
    echo(f"demo: street {STREET[1]}, {len(COMMUNITIES)} communities, {len(nodes) - 1 - len(COMMUNITIES)} grids")
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
