"""每月回访: the daily job writes, per community, last month's resolutions and their
implementation status; supervisors record the call back (on time when by the 20th)."""
from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.web.conftest import csrf_token, sign_in, with_passwords  # noqa: F401  (fixture)
from tests.web.test_disclosure import deliberation  # noqa: F401  (fixture)

LOCAL = ZoneInfo("Asia/Shanghai")


def local(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=LOCAL)


@pytest.fixture
def clock(monkeypatch):
    """The disclosure feature's clock, set by the test."""
    from app.disclosure import service

    now = {"at": local(12, 1)}
    monkeypatch.setattr(service, "_clock", lambda: now["at"])

    def set_to(at: datetime) -> None:
        now["at"] = at

    return set_to


@pytest.fixture
def november(app, with_passwords, deliberation, monkeypatch):
    """C1: one resolution implemented and its result published, one still being implemented;
    C2: one never implemented (overdue after 20 days); C1 also has an October resolution."""
    monkeypatch.setitem(app.config, "DISCLOSURE_IMPLEMENTATION_DAYS", 20)
    done = deliberation(disclosed_at=local(11, 3), topic="十一月已实施",
                        implemented=(local(11, 20), "已完工。"), result=(local(11, 22), "已完工并验收。"))
    pending = deliberation(disclosed_at=local(11, 10), topic="十一月实施中")
    late = deliberation(disclosed_at=local(11, 5), topic="十一月逾期", grid="S-C2")
    deliberation(disclosed_at=local(10, 20), topic="十月议题")
    return {"done": done, "pending": pending, "late": late}


def run_job(app) -> int:
    from app.db import db
    from app.disclosure import jobs

    with app.app_context():
        changed = jobs.monthly_followup()
        db.session.remove()
    return changed


def records(app) -> dict[str, dict]:
    from app.db import db
    from app.disclosure.models import FollowUp

    with app.app_context():
        found = {
            f"{r.community.code} {r.month}": {
                "id": r.id, "due_on": r.due_on.isoformat(), "generated_at": r.generated_at,
                "statuses": {item["topic"]: item["status"] for item in r.items},
                "called_back_by": r.called_back_by.username if r.called_back_by else None,
                "on_time": r.called_back_on_time, "note": r.note,
            }
            for r in db.session.scalars(select(FollowUp).order_by(FollowUp.id))
        }
        db.session.remove()
    return found


def callback(client, record_id: int, note: str = ""):
    page = client.get("/disclosure/followups")
    return client.post(f"/disclosure/followups/{record_id}/callback",
                       data={"csrf_token": csrf_token(page.get_data(as_text=True)), "note": note})


def test_the_job_is_registered_to_run_daily(app, november, clock):
    from app.jobs import PERIODIC_JOBS, run_periodic_job

    job = PERIODIC_JOBS["disclosure_monthly_followup"]
    assert job.func == "app.disclosure.jobs.monthly_followup" and job.every_seconds == 24 * 3600
    clock(local(12, 2))
    with app.app_context():
        assert run_periodic_job("disclosure_monthly_followup") == 2  # as the worker and the sweeper run it
    assert set(records(app)) == {"S-C1 2026-11", "S-C2 2026-11"}


def test_the_job_lists_last_months_resolutions_per_community_idempotently(app, november, clock):
    clock(local(12, 3))
    assert run_job(app) == 2
    first = records(app)
    assert set(first) == {"S-C1 2026-11", "S-C2 2026-11"}
    assert first["S-C1 2026-11"]["statuses"] == {"十一月已实施": "implemented", "十一月实施中": "in_progress"}
    assert first["S-C2 2026-11"]["statuses"] == {"十一月逾期": "overdue"}
    assert first["S-C1 2026-11"]["due_on"] == "2026-12-20"
    # run again the same day, and on later days: still one record per community-month
    assert run_job(app) == 2
    assert set(records(app)) == set(first)
    # the pending resolution gets implemented; the next daily run shows it
    from app.db import db
    from app.disclosure import demo
    from app.people.models import User

    with app.app_context():
        staff = db.session.scalar(select(User).where(User.username == "community"))
        demo.implement(november["pending"][1], staff, at=local(12, 8), progress="已完工。")
        db.session.remove()
    clock(local(12, 9))
    run_job(app)
    assert records(app)["S-C1 2026-11"]["statuses"]["十一月实施中"] == "implemented"
    # in January the job follows up December (nothing published then): November stays as it was
    clock(local(1, 5).replace(year=2027))
    assert run_job(app) == 0
    assert set(records(app)) == set(first)


def test_supervisors_record_the_call_back_on_time_or_late(app, client, november, clock):
    clock(local(12, 3))
    run_job(app)
    ids = {key: value["id"] for key, value in records(app).items()}
    sign_in(client, "supervisor")
    page = client.get("/disclosure/followups")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "C1社区 · 2026-11" in html and "C2社区 · 2026-11" in html
    assert "十一月已实施" in html and "已实施" in html and "实施中" in html and "已逾期" in html
    assert "回访截止：2026-12-20" in html and "十月议题" not in html
    # the navigation badge: two communities to call back
    assert re.search(r'href="/disclosure/followups"[^>]*>\s*每月回访 <span class="badge" data-count="2">', html)

    clock(local(12, 18))
    response = callback(client, ids["S-C1 2026-11"], note="社区书记电话确认：充电棚施工中。")
    assert response.status_code == 303
    clock(local(12, 21))
    assert callback(client, ids["S-C2 2026-11"]).status_code == 303
    found = records(app)
    assert found["S-C1 2026-11"]["called_back_by"] == "supervisor" and found["S-C1 2026-11"]["on_time"] is True
    assert found["S-C1 2026-11"]["note"] == "社区书记电话确认：充电棚施工中。"
    assert found["S-C2 2026-11"]["on_time"] is False
    html = client.get("/disclosure/followups?month=2026-11").get_data(as_text=True)
    assert "按期" in html and "逾期" in html and "完成回访" in html

    # twice is refused in place; the job no longer touches a called-back record
    again = callback(client, ids["S-C1 2026-11"])
    assert again.status_code == 409 and "无需重复登记" in again.get_data(as_text=True)
    run_job(app)
    assert records(app)["S-C1 2026-11"]["generated_at"] == found["S-C1 2026-11"]["generated_at"]


def test_only_supervisors_within_their_grid_see_and_record(app, client, november, clock):
    from app.db import commit, db
    from app.people import service as people

    clock(local(12, 3))
    run_job(app)
    ids = {key: value["id"] for key, value in records(app).items()}
    anonymous = client.get("/disclosure/followups")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]

    sign_in(client, "member")
    refused = client.get("/disclosure/followups")
    assert refused.status_code == 403 and "仅供督办人员" in refused.get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/work/mine").get_data(as_text=True))})

    with app.app_context():
        user = people.create_user("sup2", "sup2", None)
        people.grant_role(user, "supervisor", people.grid_by_code("S-C2"))
        user.password_hash = db.session.scalar(select(type(user).password_hash).where(type(user).username == "member"))
        commit()
        db.session.remove()
    sign_in(client, "sup2")
    html = client.get("/disclosure/followups").get_data(as_text=True)
    assert "C2社区 · 2026-11" in html and "C1社区" not in html
    outside = callback(client, ids["S-C1 2026-11"])
    assert outside.status_code == 403 and "不在您的督办范围" in outside.get_data(as_text=True)
    assert records(app)["S-C1 2026-11"]["called_back_by"] is None
    assert client.post(f"/disclosure/followups/{ids['S-C1 2026-11']}/callback", data={}).status_code == 400  # no CSRF
    assert client.get("/disclosure/followups?month=2026-99").status_code == 422


def test_the_cli_runs_the_follow_up_for_a_month(app, november, clock):
    clock(local(12, 2))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["disclosure", "followup", "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    assert "follow-up 2026-11: 2 community record(s) written (due by 2026-12-20)" in result.output
    assert set(records(app)) == {"S-C1 2026-11", "S-C2 2026-11"}
    october = runner.invoke(args=["disclosure", "followup", "--month", "2026-10"])
    assert october.exit_code == 0 and "1 community record(s)" in october.output
    bad = runner.invoke(args=["disclosure", "followup", "--month", "November"])
    assert bad.exit_code == 2 and "2026-11" in bad.output


def test_the_follow_up_over_the_api(app, client, world, november, clock):
    from tests.integration.helpers import call

    clock(local(12, 3))
    run_job(app)
    listed = call(client, world, "GET", "/api/disclosure/followups?month=2026-11", "supervisor")
    assert listed.status_code == 200
    by_community = {r["community"]["code"]: r for r in listed.get_json()}
    assert set(by_community) == {"S-C1", "S-C2"} and by_community["S-C1"]["due_on"] == "2026-12-20"
    assert {i["status"] for i in by_community["S-C1"]["items"]} == {"implemented", "in_progress"}
    assert call(client, world, "GET", "/api/disclosure/followups", "member").status_code == 403
    assert call(client, world, "GET", "/api/disclosure/followups", None).status_code == 401
    record_id = by_community["S-C2"]["id"]
    assert call(client, world, "POST", f"/api/disclosure/followups/{record_id}/callback", "member", json={}).status_code == 403
    clock(local(12, 20, 23))
    done = call(client, world, "POST", f"/api/disclosure/followups/{record_id}/callback", "chief", json={"note": "已电话回访"})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["called_back_by"] == "chief" and done.get_json()["called_back_on_time"] is True
    again = call(client, world, "POST", f"/api/disclosure/followups/{record_id}/callback", "chief", json={})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_called_back"
