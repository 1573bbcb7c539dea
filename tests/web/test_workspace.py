"""The handlers' workspace pages: 我的待办 / 待认领 / 超期督办, their lights, filters, badges,
and the actions on work items (claim, release, reassign, return) — all through the real
sign-in form and CSRF-protected POSTs."""
from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from tests.integration.helpers import REGISTER, SELF_PATH, call, open_item, start_case, walk
from tests.web.conftest import csrf_token, sign_in

SHANGHAI = ZoneInfo("Asia/Shanghai")
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


# -- helpers (the case page tests use them too) -----------------------------------
def page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.get_data(as_text=True)


def references(html: str) -> list[str]:
    """Case references of the queue's rows, in the order shown."""
    return re.findall(r'class="ref">([A-Z]+-\d{4}-\d{6})</a>', html)


def lights(html: str) -> list[str]:
    return re.findall(r'<tr class="row-(\w+)" data-item=', html)


def badge(html: str, endpoint_path: str) -> int | None:
    nav = re.search(r'<nav class="mainnav".*?</nav>', html, re.S).group(0)
    link = re.search(rf'<a href="{re.escape(endpoint_path)}"[^>]*>(.*?)</a>', nav, re.S)
    assert link, f"no navigation link to {endpoint_path}"
    count = re.search(r'<span class="badge" data-count="(\d+)">', link.group(1))
    return int(count.group(1)) if count else None


def post(client, url: str, data: dict | None = None, *, token_from: str = "/work/mine", **kwargs):
    token = csrf_token(page(client, token_from))
    return client.post(url, data={"csrf_token": token, **(data or {})}, **kwargs)


def event_kinds(client, world, reference: str) -> list[str]:
    body = call(client, world, "GET", f"/api/cases/{reference}/events?page_size=200").get_json()
    return [event["kind"] for event in body["items"]]


def events(client, world, reference: str) -> list[dict]:
    return call(client, world, "GET", f"/api/cases/{reference}/events?page_size=200").get_json()["items"]


def form_data(data: dict) -> dict:
    """Task data as a browser would post it."""
    return {key: (str(value).lower() if isinstance(value, bool) else value) for key, value in data.items()}


def item_id(client, world, reference: str, task: str) -> int:
    return open_item(client, world, reference, task)["id"]


def set_item(app, reference: str, task: str, **values) -> None:
    """Give an open work item deadlines (or other values) directly: tests of lights and order."""
    from sqlalchemy import select

    from app.cases.models import Case
    from app.db import commit, db
    from app.work.models import OPEN_STATES, WorkItem

    with app.app_context():
        item = db.session.scalar(
            select(WorkItem).join(Case, Case.id == WorkItem.case_id)
            .where(Case.reference == reference, WorkItem.spec_id == task, WorkItem.state.in_(OPEN_STATES))
        )
        for key, value in values.items():
            setattr(item, key, value)
        commit()
        db.session.remove()


def set_case_data(app, reference: str, **values) -> None:
    from app.cases.models import Case
    from app.db import commit, db

    with app.app_context():
        case = db.session.query(Case).filter_by(reference=reference).one()
        case.data = {**(case.data or {}), **values}
        commit()
        db.session.remove()


def add_person(app, username: str, role: str, grid: str) -> None:
    from app.db import commit, db
    from app.people import service as people
    from app.people.service import _hasher
    from tests.web.conftest import PASSWORD

    with app.app_context():
        user = people.create_user(username, f"{username}同志", None)
        user.password_hash = _hasher.hash(PASSWORD)
        people.grant_role(user, role, people.grid_by_code(grid))
        commit()
        db.session.remove()


def now_utc():
    from app.timeutil import utcnow

    return utcnow()


def local(dt) -> str:
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


# -- queues ------------------------------------------------------------------------
def test_each_user_sees_the_work_of_their_roles_in_their_grids(client, with_passwords):
    world = with_passwords
    c1_first = start_case(client, world, title="一号案件")["reference"]
    c1_second = start_case(client, world, title="二号案件")["reference"]
    c2 = start_case(client, world, grid="S-C2-G1", user="member2", title="二社区案件")["reference"]

    sign_in(client, "member")
    claimable = page(client, "/work/claimable")
    assert '<html lang="zh-CN">' in claimable and "<h1>待认领" in claimable
    assert sorted(references(claimable)) == sorted([c1_first, c1_second])
    assert "登记核实" in claimable and "网格员" in claimable and "C1一网格" in claimable
    assert references(page(client, "/work/mine")) == []

    client2 = client.application.test_client()
    sign_in(client2, "member2")
    assert references(page(client2, "/work/claimable")) == [c2]

    client3 = client.application.test_client()
    sign_in(client3, "community")
    assert references(page(client3, "/work/claimable")) == []  # register is a grid member's task
    walk(client, world, c1_first, SELF_PATH[:1])
    html = page(client3, "/work/claimable")
    assert references(html) == [c1_first] and "社区研判" in html and "社区工作人员" in html


def test_queues_are_sorted_by_due_time_with_lights_in_local_time(app, client, with_passwords):
    world = with_passwords
    later = start_case(client, world, title="稍后到期")["reference"]
    none = start_case(client, world, title="没有时限")["reference"]
    overdue = start_case(client, world, title="已经超期")["reference"]
    soon = start_case(client, world, title="即将到期")["reference"]
    now = now_utc()
    set_item(app, later, "register", due_at=now + timedelta(days=5), warn_at=now + timedelta(days=4))
    set_item(app, overdue, "register", due_at=now - timedelta(hours=2), warn_at=now - timedelta(hours=6))
    set_item(app, soon, "register", due_at=now + timedelta(hours=3), warn_at=now - timedelta(hours=1))

    sign_in(client, "member")
    html = page(client, "/work/claimable")
    assert references(html) == [overdue, soon, later, none]
    assert lights(html) == ["red", "yellow", "green", "green"]
    assert "超期" in html and "临期" in html and "正常" in html and "无时限" in html
    assert local(now + timedelta(days=5)) in html  # Asia/Shanghai, not UTC
    assert local(now - timedelta(hours=2)) in html


def test_navigation_badges_count_my_claimed_and_my_claimable_work(client, with_passwords):
    world = with_passwords
    first = start_case(client, world)["reference"]
    start_case(client, world)
    start_case(client, world)
    sign_in(client, "member")
    html = page(client, "/work/claimable")
    assert badge(html, "/work/mine") is None and badge(html, "/work/claimable") == 3
    assert '<a href="/work/overdue"' not in html  # supervisors only

    response = post(client, f"/work/items/{item_id(client, world, first, 'register')}/claim",
                    {"origin": "claimable"}, token_from="/work/claimable")
    assert response.status_code == 303
    html = page(client, "/work/mine")
    assert badge(html, "/work/mine") == 1 and badge(html, "/work/claimable") == 2
    assert references(html) == [first] and "<h1>我的待办" in html


def test_filters_by_process_class_grid_and_status(app, client, with_passwords):
    world = with_passwords
    plain = start_case(client, world, title="普通")["reference"]
    class_b = start_case(client, world, title="B类事件")["reference"]
    late = start_case(client, world, title="超期事件")["reference"]
    set_case_data(app, class_b, level="B")
    set_item(app, late, "register", due_at=now_utc() - timedelta(hours=1))

    sign_in(client, "member")
    assert sorted(references(page(client, "/work/claimable?process=grid_quick"))) == sorted([plain, class_b, late])
    empty = page(client, "/work/claimable?process=appeal_loop")
    assert references(empty) == [] and "没有符合筛选条件的任务" in empty
    by_class = page(client, "/work/claimable?level=B")
    assert references(by_class) == [class_b] and "B类" in by_class
    assert references(page(client, "/work/claimable?status=red")) == [late]
    assert references(page(client, "/work/claimable?overdue=1")) == [late]
    assert sorted(references(page(client, "/work/claimable?status=green"))) == sorted([plain, class_b])
    assert len(references(page(client, "/work/claimable?grid=S-C1-G1"))) == 3
    # A grid outside my scope shows nothing of it; an unknown one says so in place.
    assert references(page(client, "/work/claimable?grid=S-C2")) == []
    unknown = page(client, "/work/claimable?grid=NOPE")
    assert "没有该网格" in unknown and len(references(unknown)) == 3
    # The grid filter offers only grids within my scope.
    html = page(client, "/work/claimable")
    assert 'value="S-C1-G1"' in html and 'value="S-C2-G1"' not in html


def test_queues_are_paginated(app, client, with_passwords, monkeypatch):
    world = with_passwords
    made = [start_case(client, world, title=f"案件{i}")["reference"] for i in range(3)]
    monkeypatch.setitem(app.config, "PAGE_SIZE_DEFAULT", 2)
    sign_in(client, "member")
    first = page(client, "/work/claimable")
    second = page(client, "/work/claimable?page=2")
    assert len(references(first)) == 2 and len(references(second)) == 1
    assert sorted(references(first) + references(second)) == sorted(made)
    assert "第 1 / 2 页" in first and 'rel="next"' in first


def test_claim_and_release_from_the_pages_are_recorded(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    item = item_id(client, world, reference, "register")
    sign_in(client, "member")

    claimed = post(client, f"/work/items/{item}/claim", {"origin": "claimable"}, token_from="/work/claimable")
    assert claimed.status_code == 303
    assert claimed.headers["Location"].endswith(f"/cases/{reference}#task-{item}")
    assert "已认领" in page(client, f"/cases/{reference}")  # flashed
    assert references(page(client, "/work/mine")) == [reference]
    assert references(page(client, "/work/claimable")) == []

    released = post(client, f"/work/items/{item}/release", {"origin": "inbox"})
    assert released.status_code == 303 and released.headers["Location"].endswith("/work/mine")
    assert references(page(client, "/work/mine")) == []
    assert references(page(client, "/work/claimable")) == [reference]
    assert event_kinds(client, world, reference) == ["case_started", "task_claimed", "task_released"]


def test_claiming_what_someone_else_claimed_first_is_said_in_place(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, SELF_PATH[:4])  # the close task: duty chiefs
    item = item_id(client, world, reference, "close")
    sign_in(client, "chief")
    token = csrf_token(page(client, "/work/claimable"))
    assert call(client, world, "POST", f"/api/work-items/{item}/claim", "chief2").status_code == 200
    before = event_kinds(client, world, reference)
    response = client.post(f"/work/items/{item}/claim", data={"csrf_token": token, "origin": "claimable"})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "该任务已被他人先行认领" in html and "<h1>待认领" in html
    assert event_kinds(client, world, reference) == before


def test_posts_without_the_role_or_outside_the_scope_are_refused_and_record_nothing(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    item = item_id(client, world, reference, "register")
    before = event_kinds(client, world, reference)
    # member2: right role, other community; community: wrong role; resident: no working role.
    for username in ("member2", "community", "resident"):
        other = client.application.test_client()
        sign_in(other, username)
        token = csrf_token(page(other, "/work/mine"))
        for action in ("claim", "release", "reassign", "return"):
            response = other.post(f"/work/items/{item}/{action}",
                                  data={"csrf_token": token, "origin": "claimable", "reason": "试试", "assignee": "member"})
            assert response.status_code == 403, (username, action, response.status_code)
            assert "text/html" in response.content_type
        complete = other.post(f"/cases/{reference}/items/{item}/complete", data={"csrf_token": token, **form_data(REGISTER)})
        assert complete.status_code == 403, (username, complete.status_code)
        if username == "member2":  # the others may read the case, and so keep notes on it
            assert other.post(f"/cases/{reference}/notes", data={"csrf_token": token, "text": "看看"}).status_code == 403
            assert "未找到" in page(other, f"/cases/{reference}", 404)
    assert event_kinds(client, world, reference) == before


def test_forms_without_csrf_tokens_are_refused(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    item = item_id(client, world, reference, "register")
    sign_in(client, "member")
    assert client.post(f"/work/items/{item}/claim", data={"origin": "claimable"}).status_code == 400
    assert event_kinds(client, world, reference) == ["case_started"]


def test_titles_with_markup_are_shown_escaped_in_queues(client, with_passwords):
    world = with_passwords
    start_case(client, world, title=f"垃圾{SCRIPT}堆放")
    sign_in(client, "member")
    html = page(client, "/work/claimable")
    assert SCRIPT not in html and f"垃圾{ESCAPED}堆放" in html


def test_english_switch_shows_english_labels(client, with_passwords):
    world = with_passwords
    start_case(client, world)
    sign_in(client, "member")
    html = page(client, "/work/claimable")
    switched = client.post("/language", data={"language": "en", "next": "/work/claimable", "csrf_token": csrf_token(html)})
    assert switched.status_code == 302
    english = page(client, "/work/claimable")
    assert '<html lang="en">' in english
    for label in ("My tasks", "To claim", "Claim", "Grid member", "Process", "Class", "On time"):
        assert label in english, label
    assert "待认领" not in english and "认领</button>" not in english


# -- supervision -------------------------------------------------------------------
def _overdue_close_task(app, client, world, *, claimed_by: str | None = "chief"):
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, SELF_PATH[:4])
    item = item_id(client, world, reference, "close")
    if claimed_by:
        assert call(client, world, "POST", f"/api/work-items/{item}/claim", claimed_by).status_code == 200
    set_item(app, reference, "close", due_at=now_utc() - timedelta(hours=3))
    return reference, item


def test_overdue_list_is_for_supervisors_within_their_scope(app, client, with_passwords):
    world = with_passwords
    reference, item = _overdue_close_task(app, client, world)
    on_time = start_case(client, world)["reference"]
    sign_in(client, "supervisor")
    html = page(client, "/work/overdue")
    assert "<h1>超期督办" in html and references(html) == [reference]
    assert on_time not in html
    assert badge(html, "/work/overdue") == 1
    assert "改派" in html and "退回" in html and "chief2同志" not in html and "(chief2)" in html

    member = client.application.test_client()
    sign_in(member, "member")
    assert member.get("/work/overdue").status_code == 403


def test_supervisor_reassigns_with_a_reason_recorded_as_an_event(app, client, with_passwords):
    world = with_passwords
    reference, item = _overdue_close_task(app, client, world)
    sign_in(client, "supervisor")
    before = event_kinds(client, world, reference)

    token = csrf_token(page(client, "/work/overdue"))
    missing_reason = client.post(f"/work/items/{item}/reassign",
                                 data={"csrf_token": token, "origin": "overdue", "assignee": "chief2", "reason": " "})
    assert missing_reason.status_code == 422
    assert "请填写原因" in missing_reason.get_data(as_text=True)
    wrong_person = client.post(f"/work/items/{item}/reassign",
                               data={"csrf_token": token, "origin": "overdue", "assignee": "member", "reason": "人手不足"})
    assert wrong_person.status_code == 422
    assert "不具备办理该任务的角色" in wrong_person.get_data(as_text=True)
    assert event_kinds(client, world, reference) == before

    done = client.post(f"/work/items/{item}/reassign",
                       data={"csrf_token": token, "origin": "overdue", "assignee": "chief2", "reason": "原办理人出差"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/work/overdue")
    last = events(client, world, reference)[-1]
    assert last["kind"] == "task_reassigned" and last["actor"] == "supervisor" and last["role"] == "supervisor"
    assert (last["payload"]["from"], last["payload"]["to"], last["payload"]["reason"]) == ("chief", "chief2", "原办理人出差")
    chief2 = client.application.test_client()
    sign_in(chief2, "chief2")
    assert references(page(chief2, "/work/mine")) == [reference]


def test_supervisor_returns_claimed_work_to_its_queue(app, client, with_passwords):
    world = with_passwords
    reference, item = _overdue_close_task(app, client, world)
    sign_in(client, "chief2")  # a duty chief supervises too
    token = csrf_token(page(client, "/work/overdue"))
    done = client.post(f"/work/items/{item}/return", data={"csrf_token": token, "origin": "overdue", "reason": "长期未处理"})
    assert done.status_code == 303
    last = events(client, world, reference)[-1]
    assert last["kind"] == "task_returned" and last["payload"]["reason"] == "长期未处理" and last["payload"]["from"] == "chief"
    assert reference in references(page(client, "/work/claimable"))
    # A ready item cannot be returned again: a conflict, said in place, nothing recorded.
    again = client.post(f"/work/items/{item}/return", data={"csrf_token": token, "origin": "overdue", "reason": "再退"})
    assert again.status_code == 409 and "当前未被认领" in again.get_data(as_text=True)
    assert event_kinds(client, world, reference).count("task_returned") == 1


def test_reassign_and_return_are_refused_to_non_supervisors(app, client, with_passwords):
    world = with_passwords
    reference, item = _overdue_close_task(app, client, world)
    before = event_kinds(client, world, reference)
    for username in ("member", "community", "department"):
        other = client.application.test_client()
        sign_in(other, username)
        token = csrf_token(page(other, "/work/mine"))
        for action, data in (("reassign", {"assignee": "chief2", "reason": "x"}), ("return", {"reason": "x"})):
            response = other.post(f"/work/items/{item}/{action}", data={"csrf_token": token, "origin": "overdue", **data})
            assert response.status_code == 403, (username, action)
            assert "只有负责该网格的督办或值班长可以执行此操作" in response.get_data(as_text=True)
    assert event_kinds(client, world, reference) == before
