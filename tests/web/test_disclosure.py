"""The public disclosure board (no login): resolutions of 四议两公开 with their votes and
posting window, implementation results, closed demands without personal data; objections
that reach the process as a message; the archive."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.integration.helpers import call
from tests.web.conftest import csrf_token
from tests.web.test_public import TO_RESIDENT_CONFIRM, case_facts, drive, redis_limits, submit_ok, text_of  # noqa: F401

TOPIC = "小区南门加装电动车充电棚"
RESOLUTION = "同意使用公益金 12 万元在南门加装电动车充电棚，联系人李建国 13812345678，公开招标施工。"


@pytest.fixture
def deliberation(app, world):
    """make(days_ago=1, **kwargs) → (disclosure id, case reference): a 四议两公开 case in C1
    whose resolution was disclosed ``days_ago`` days ago (posting window 5 days)."""
    from app.db import commit, db
    from app.disclosure import demo
    from app.disclosure.models import ResolutionDisclosure
    from app.people import service as people
    from app.people.models import User
    from app.timeutil import utcnow

    def make(days_ago: float = 1, grid: str = "S-C1", topic: str = TOPIC, **kwargs):
        with app.app_context():
            suffix = "" if grid.startswith("S-C1") else "2"  # C2 gets its own party branch and staff
            users = {}
            for role, username in (("party_branch", "branch"), ("community_staff", "community")):
                user = db.session.scalar(select(User).where(User.username == username + suffix))
                if user is None:
                    user = people.create_user(username + suffix, username + suffix, None)
                    people.grant_role(user, role, people.grid_by_code(grid))
                    commit()
                users[role] = user
            disclosed_at = kwargs.pop("disclosed_at", None) or utcnow() - timedelta(days=days_ago)
            case = demo.deliberate(users, grid=grid, disclosed_at=disclosed_at, topic=topic, resolution=RESOLUTION, **kwargs)
            row = db.session.scalar(select(ResolutionDisclosure).where(ResolutionDisclosure.case_id == case.id)
                                    .order_by(ResolutionDisclosure.id.desc()))
            result = (row.id, case.reference)
            db.session.remove()
        return result

    return make


def events(app, reference: str) -> list[tuple[str, str | None, str | None, dict]]:
    from app.cases.models import Case, CaseEvent
    from app.db import db

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference))
        rows = [(e.kind, e.actor, e.role, e.payload) for e in
                db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq))]
        db.session.remove()
    return rows


def open_tasks(app, reference: str) -> list[str]:
    from app.cases.models import Case
    from app.db import db
    from app.work.models import OPEN_STATES, WorkItem

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference))
        found = sorted(i.spec_id for i in db.session.scalars(
            select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES))))
        db.session.remove()
    return found


def object_to(client, disclosure_id: int, **data):
    page = client.get(f"/disclosure/resolutions/{disclosure_id}")
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), **data}
    return client.post(f"/disclosure/resolutions/{disclosure_id}/objection", data=form)


OBJECTION = "充电棚占用消防通道，建议改建在北侧空地，请两委会复核选址。"


# -- the board ---------------------------------------------------------------------------------
def test_the_board_shows_a_resolution_in_its_posting_window_with_votes(client, deliberation):
    disclosure_id, reference = deliberation(days_ago=1)
    board = client.get("/disclosure")
    html = board.get_data(as_text=True)
    assert board.status_code == 200
    assert '<html lang="zh-CN">' in html and 'name="viewport"' in html and "css/disclosure.css" in html
    assert "公开栏" in html and "公示期内、可提出异议" in html
    assert TOPIC in html and "C1社区" in html and "居民会议" in html
    card = text_of(html)
    for number in ("120", "86", "71", "9", "6"):
        assert re.search(rf"\b{number}\b", card), number
    page = client.get(f"/disclosure/resolutions/{disclosure_id}").get_data(as_text=True)
    assert "公开招标施工" in page and "社区居务公开栏" in page
    assert 'name="content"' in page and "提出异议" in page
    # the resolution as published, with the phone number in it masked
    assert "13812345678" not in page and "5678" not in page and "138********" in page
    assert reference not in page  # internal references are not published


def test_the_board_is_linked_from_the_public_home_page_and_navigation(client):
    home = client.get("/public").get_data(as_text=True)
    assert 'href="/disclosure"' in home and "公开栏" in home


def test_no_personal_data_reaches_the_board(app, client, world, deliberation):
    # A resident's demand, closed with a published feedback …
    code = submit_ok(client, contact_phone="13912347777", location="幸福里 7 栋 302 室",
                     description="楼道里堆放杂物，邻居王大妈多次反映无人处理。")
    reference = case_facts(app, code)["reference"]
    drive(client, world, reference, TO_RESIDENT_CONFIRM + [
        ("resident_confirm", "resident", {"satisfaction": "satisfied", "resident_comment": "张三很满意"}),
        ("publish_feedback", "community", {"feedback_text": "楼道杂物已清理，物业每日巡查。联系电话 13912347777",
                                           "resident_notified": True}),
        ("supervisor_close", "supervisor", {"close_decision": "close", "close_note": "督办人钱某同意销单"}),
    ])
    assert case_facts(app, code)["status"] == "completed"
    # … and a resolution with a named objection
    disclosure_id, _ = deliberation(days_ago=1)
    assert object_to(client, disclosure_id, objector="王小明", content=OBJECTION).status_code == 303

    pages = [client.get(url).get_data(as_text=True) for url in (
        "/disclosure", f"/disclosure/resolutions/{disclosure_id}", "/disclosure/demands", "/disclosure/archive")]
    assert "楼道杂物已清理" in pages[0] and "环境卫生" in pages[0] and "满意" in pages[0]
    for html in pages:
        for secret in ("13912347777", "7777", "幸福里", "302", "王大妈", "王小明", "张三", "钱某", code, reference,
                       "branch", "community"):
            assert secret not in text_of(html), secret
        assert "13812345678" not in html and "5678" not in html


def test_closed_demands_list_filters_by_community_and_pages(app, client, world, monkeypatch):
    for grid in ("S-C1-G1", "S-C2-G1"):
        code = submit_ok(client, grid=grid)
        drive(client, world, case_facts(app, code)["reference"],
              [("grid_report", "member" if grid == "S-C1-G1" else "member2",
                {"intake": "reject", "register_note": "经核实不属实。", "reject_reason": "经核实不属实。"})])
    monkeypatch.setitem(app.config, "DISCLOSURE_PAGE_SIZE", 1)
    first = client.get("/disclosure/demands").get_data(as_text=True)
    assert "共 2 件" in first and "第 1 / 2 页" in first and "经核实不予受理" in first
    second = client.get("/disclosure/demands?page=2").get_data(as_text=True)
    assert "第 2 / 2 页" in second
    only_c2 = client.get("/disclosure/demands?community=S-C2").get_data(as_text=True)
    assert "共 1 件" in only_c2 and "C2社区" in text_of(only_c2)


# -- objections ----------------------------------------------------------------------------
def test_an_objection_within_the_window_reaches_the_process(app, client, deliberation):
    disclosure_id, reference = deliberation(days_ago=1)
    before = len(events(app, reference))
    response = object_to(client, disclosure_id, objector="", content=OBJECTION)
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/disclosure/resolutions/{disclosure_id}")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "您的异议已收到" in page
    history = events(app, reference)
    assert len(history) == before + 1
    kind, actor, role, payload = history[-1]
    assert (kind, actor, role) == ("message_received", "resident", "resident")
    assert payload["name"] == "objection_received"
    assert payload["payload"] == {"objector": "居民（未署名）", "content": OBJECTION}
    assert open_tasks(app, reference) == ["objection_review"]
    # the board counts it, and a second objection waits until the review is done
    assert re.search(r"收到异议\s*</dt>\s*<dd>1<", page)
    again = object_to(client, disclosure_id, content=OBJECTION + "（补充）")
    assert again.status_code == 409 and "正在复核" in again.get_data(as_text=True)
    assert len(events(app, reference)) == before + 1


def test_an_objection_after_the_window_is_refused_and_changes_nothing(app, client, deliberation):
    disclosure_id, reference = deliberation(days_ago=6)  # the window ended a day ago; its timer has not fired yet
    page = client.get(f"/disclosure/resolutions/{disclosure_id}").get_data(as_text=True)
    assert 'name="content"' not in page and "公示期已结束" in page
    assert TOPIC not in client.get("/disclosure").get_data(as_text=True).split('id="results"')[0].split('id="open"')[1]
    before = events(app, reference)
    refused = object_to(client, disclosure_id, content=OBJECTION)
    assert refused.status_code == 409 and "公示期已结束" in refused.get_data(as_text=True)
    assert events(app, reference) == before
    # once the timer has fired the case has moved on to implementation: still refused
    with app.app_context():
        from app.jobs import fire_due_timers

        assert fire_due_timers() == 1
    assert open_tasks(app, reference) == ["implementation"]
    assert object_to(client, disclosure_id, content=OBJECTION).status_code == 409
    # and the resolution is in the archive
    archive = client.get("/disclosure/archive").get_data(as_text=True)
    assert TOPIC in archive and "共 1 项" in archive


@pytest.mark.parametrize("data, field, message", [
    ({"content": ""}, "content", "请填写异议内容"),
    ({"content": "太短了"}, "content", "10 至 1000 字"),
    ({"content": "异" * 1001}, "content", "10 至 1000 字"),
    ({"content": OBJECTION, "objector": "名" * 41}, "objector", "最多 40 个字"),
])
def test_bad_objections_are_said_in_place_and_change_nothing(app, client, deliberation, data, field, message):
    disclosure_id, reference = deliberation(days_ago=1)
    before = events(app, reference)
    response = object_to(client, disclosure_id, **data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in html and 'aria-invalid="true"' in html and f'id="{field}-error"' in html
    assert events(app, reference) == before and open_tasks(app, reference) == []


def test_an_objection_without_its_csrf_token_is_refused_in_place(app, client, deliberation):
    disclosure_id, reference = deliberation(days_ago=1)
    before = events(app, reference)
    response = client.post(f"/disclosure/resolutions/{disclosure_id}/objection", data={"content": OBJECTION})
    assert response.status_code == 400 and "表单已过期" in response.get_data(as_text=True)
    assert OBJECTION in response.get_data(as_text=True)  # what the resident typed is kept
    assert events(app, reference) == before


def test_unknown_resolutions_and_bad_filters(client, deliberation):
    assert client.get("/disclosure/resolutions/999999").status_code == 404
    assert client.post("/disclosure/resolutions/999999/objection", data={"content": OBJECTION}).status_code == 404
    bad = client.get("/disclosure/archive?month=2026-13&community=NOPE")
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "YYYY-MM" in html and "没有这个社区" in html
    assert client.get("/disclosure/archive?page=abc").status_code == 200


def test_an_upheld_objection_withdraws_the_resolution(app, client, world, deliberation):
    disclosure_id, reference = deliberation(days_ago=1)
    assert object_to(client, disclosure_id, content=OBJECTION).status_code == 303
    item = [i for i in call(client, world, "GET", f"/api/work-items?case={reference}", "committees").get_json()["items"]
            if i["task"] == "objection_review"][0]
    done = call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "committees",
                json={"data": {"review_decision": "uphold", "review_reason": "选址确有消防隐患。"}})
    assert done.status_code == 200, done.get_json()
    page = client.get(f"/disclosure/resolutions/{disclosure_id}").get_data(as_text=True)
    assert "异议成立后撤回" in page and 'name="content"' not in page
    assert object_to(client, disclosure_id, content=OBJECTION).status_code == 409
    archive = client.get("/disclosure/archive").get_data(as_text=True)
    assert TOPIC in archive


def test_the_archive_filters_by_community_and_month_and_pages(app, client, monkeypatch, deliberation):
    from datetime import datetime, timezone

    def at(day):  # local noon on that day of November 2026
        return datetime(2026, 11, day, 4, tzinfo=timezone.utc)

    deliberation(disclosed_at=at(3), topic="十一月议题甲",
                 implemented=(at(12), "充电棚已建成。"), result=(at(14), "充电棚已建成并投入使用，实际支出 11.6 万元。"))
    deliberation(disclosed_at=at(20), topic="十一月议题乙", grid="S-C2")
    deliberation(disclosed_at=at(3) - timedelta(days=40), topic="九月议题")
    assert "共 3 项" in client.get("/disclosure/archive").get_data(as_text=True)
    november = client.get("/disclosure/archive?month=2026-11").get_data(as_text=True)
    assert "共 2 项" in november and "十一月议题甲" in november and "九月议题" not in november
    c2 = client.get("/disclosure/archive?month=2026-11&community=S-C2").get_data(as_text=True)
    assert "共 1 项" in c2 and "十一月议题乙" in c2 and "十一月议题甲" not in c2
    monkeypatch.setitem(app.config, "DISCLOSURE_PAGE_SIZE", 2)
    first = client.get("/disclosure/archive").get_data(as_text=True)
    assert "第 1 / 2 页" in first and 'rel="next"' in first
    assert "九月议题" in client.get("/disclosure/archive?page=2").get_data(as_text=True)
    # the implementation result is on the board and on the resolution's page
    board = client.get("/disclosure").get_data(as_text=True)
    assert "实际支出 11.6 万元" in board


def test_objections_are_rate_limited_per_address(app, client, deliberation, redis_limits):
    disclosure_id, reference = deliberation(days_ago=1)
    redis_limits({"objection": (2, 3600)})
    before = events(app, reference)
    assert object_to(client, disclosure_id, content="").status_code == 422
    assert object_to(client, disclosure_id, content="").status_code == 422
    limited = object_to(client, disclosure_id, content=OBJECTION)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3600"
    assert "提交过于频繁" in limited.get_data(as_text=True)
    assert events(app, reference) == before
    other = object_to(client, disclosure_id, content=OBJECTION, )  # same address: still limited
    assert other.status_code == 429
    page = client.get(f"/disclosure/resolutions/{disclosure_id}")
    fresh = client.post(f"/disclosure/resolutions/{disclosure_id}/objection", environ_base={"REMOTE_ADDR": "10.9.8.7"},
                        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "content": OBJECTION})
    assert fresh.status_code == 303


def test_the_board_speaks_english_on_request(client, deliberation):
    deliberation(days_ago=1)
    page = client.get("/disclosure").get_data(as_text=True)
    client.post("/language", data={"language": "en", "next": "/disclosure", "csrf_token": csrf_token(page)})
    english = client.get("/disclosure").get_data(as_text=True)
    assert "Disclosure board" in english and "Open for objections" in english and "Residents&#39; meeting" in english


def test_the_board_tables_exist_after_the_migrations(app):
    """The board's tables exist after the migrations (both databases)."""
    from app.db import db
    from app.disclosure.models import FollowUp, ResolutionDisclosure

    with app.app_context():
        for model in (ResolutionDisclosure, FollowUp):
            assert db.session.scalar(select(func.count()).select_from(model)) is not None
        db.session.remove()


def test_the_board_over_the_api_for_other_channels(app, client, deliberation):
    open_id, _ = deliberation(days_ago=1)
    closed_id, _ = deliberation(days_ago=8, topic="已过公示期的议题")
    everything = client.get("/api/disclosure/resolutions")
    assert everything.status_code == 200 and everything.get_json()["total"] == 2
    opened = client.get("/api/disclosure/resolutions?state=open").get_json()
    assert [r["id"] for r in opened["items"]] == [open_id]
    item = opened["items"][0]
    assert item["votes"] == {"due": 120, "present": 86, "votes_for": 71, "votes_against": 9, "abstain": 6}
    assert item["accepting_objections"] is True and item["community"] == {"code": "S-C1", "name": "C1社区"}
    assert "13812345678" not in everything.get_data(as_text=True)
    archived = client.get("/api/disclosure/resolutions?state=archived").get_json()
    assert [r["id"] for r in archived["items"]] == [closed_id] and archived["items"][0]["accepting_objections"] is False
    assert client.get(f"/api/disclosure/resolutions/{open_id}").get_json()["topic"] == TOPIC
    missing = client.get("/api/disclosure/resolutions/999999")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "unknown_resolution"
    bad = client.get("/api/disclosure/resolutions?month=2026-13")
    assert bad.status_code == 422 and bad.get_json()["error"]["fields"] == {"month": ["use YYYY-MM"]}
    assert client.get("/api/disclosure/resolutions?state=later").status_code == 422
    assert client.get("/api/disclosure/demands").get_json()["total"] == 0
