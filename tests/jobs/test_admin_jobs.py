"""The admin page /admin/jobs: queue figures, failed jobs with a requeue button, periodic
jobs with their last run, and timers overdue by more than a minute — on Redis, and honestly
in embedded mode (no Redis)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import REDIS_TEST_URL, service_missing
from tests.jobs.faults import FIXTURE
from tests.web.conftest import csrf_token, sign_in, with_passwords  # noqa: F401 - fixture


@pytest.fixture
def jobs_app(app, with_passwords, monkeypatch):  # noqa: F811
    from app.db import commit
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    monkeypatch.setitem(app.config, "REDIS_URL", None)
    with app.app_context():
        assert not deploy_folder(FIXTURE, runtime(), deployed_by="test").issues
        commit()
    return app


@pytest.fixture
def redis_db(jobs_app, monkeypatch):
    from redis import Redis
    from redis.exceptions import RedisError

    connection = Redis.from_url(REDIS_TEST_URL)
    try:
        connection.ping()
    except RedisError as exc:
        service_missing("Redis", str(exc))
    connection.flushdb()
    monkeypatch.setitem(jobs_app.config, "REDIS_URL", REDIS_TEST_URL)
    yield connection
    connection.flushdb()
    connection.close()


def _late_case(app, minutes: int = 3) -> str:
    """A quick_timer case started ``minutes`` ago: its 2-second timer is long overdue."""
    from app.cases import service as cases
    from app.db import commit, db
    from app.runtime import runtime
    from app.timeutil import utcnow

    with app.app_context():
        case = cases.start_case(runtime(), process_id="quick_timer", title="超时未处理", grid_code="S-C1-G1",
                                data={}, actor=None, at=utcnow() - timedelta(minutes=minutes))
        commit()
        reference = case.reference
        db.session.remove()
    return reference


def _page(client) -> str:
    response = client.get("/admin/jobs")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_only_administrators_see_the_page(jobs_app):
    client = jobs_app.test_client()
    assert client.get("/admin/jobs").status_code in (302, 401)
    sign_in(client, "member")
    assert client.get("/admin/jobs").status_code == 403


def test_embedded_mode_shows_in_process_status_and_overdue_timers(jobs_app):
    reference = _late_case(jobs_app)
    client = jobs_app.test_client()
    sign_in(client, "admin")
    html = _page(client)
    assert 'data-mode="embedded"' in html and "Redis" in html
    assert 'data-periodic-job="timers.sweep"' in html
    assert reference in html, "the overdue timer is listed"
    assert "admin/jobs" in html  # the admin area's navigation links the page

    result = jobs_app.test_cli_runner().invoke(args=["timers", "fire-due"])
    assert result.exit_code == 0 and "fired timers in 1 case(s)" in result.output, result.output
    html = _page(client)
    assert reference not in html


def test_embedded_sweeper_runs_every_periodic_job(jobs_app, monkeypatch):
    """The embedded sweeper thread runs each registered periodic job (the timer sweep
    included) and records its last run."""
    import time

    from app import jobs

    monkeypatch.setitem(jobs_app.config, "TIMER_SWEEP_SECONDS", 1)
    monkeypatch.setattr(jobs, "PERIODIC_JOBS", {
        jobs.TIMER_SWEEP: jobs.PERIODIC_JOBS[jobs.TIMER_SWEEP],
        "test.tick": jobs.PeriodicJob("test.tick", "tests.jobs.test_admin_jobs.tick", 1),
    })
    monkeypatch.setattr(jobs, "_LOCAL_RUNS", {})
    TICKS.clear()
    reference = _late_case(jobs_app)
    thread = jobs.start_sweeper(jobs_app, tick_seconds=0.2)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(TICKS) < 2 or jobs.TIMER_SWEEP not in jobs._LOCAL_RUNS):
            time.sleep(0.2)
    finally:
        thread.stop_event.set()
        thread.join(10)
    assert len(TICKS) >= 2, "the periodic job ran on its interval"
    assert jobs._LOCAL_RUNS[jobs.TIMER_SWEEP]["ok"] is True
    client = jobs_app.test_client()
    sign_in(client, "admin")
    html = _page(client)
    assert reference not in html, "the sweeper fired the overdue timer"


TICKS: list[int] = []


def tick() -> None:
    TICKS.append(1)


def test_failed_jobs_are_listed_with_their_case_and_can_be_requeued(jobs_app, redis_db):
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    queue = Queue("gridcase", connection=redis_db, serializer=JSONSerializer)
    queue.enqueue("app.jobs.fire_case_timers_job", 987654, job_id="broken-987654", meta={"case": "AJ-2026-999999"})
    with jobs_app.app_context():
        worker = SimpleWorker([queue], connection=redis_db, serializer=JSONSerializer)
        worker.subscribe = lambda: None  # as gridcase workers: no pub/sub thread (its close can block a minute)
        worker.work(burst=True)
        from app.jobs import run_periodic_job

        run_periodic_job("timers.sweep")

    client = jobs_app.test_client()
    sign_in(client, "admin")
    html = _page(client)
    assert 'data-mode="redis"' in html, html
    assert 'data-job="broken-987654"' in html and "AJ-2026-999999" in html
    assert "app.jobs.fire_case_timers_job" in html and "NotFound" in html
    assert '<dd data-failed>1</dd>' in html
    assert 'data-periodic-job="timers.sweep"' in html

    token = csrf_token(html)
    assert client.post("/admin/jobs/failed/broken-987654/requeue", data={}).status_code == 400  # no CSRF token
    response = client.post("/admin/jobs/failed/broken-987654/requeue", data={"csrf_token": token})
    assert response.status_code == 302
    assert len(queue) == 1, "the job is back on its queue"
    html = _page(client)
    assert "broken-987654" in html  # shown in the flash message
    assert '<dd data-failed>0</dd>' in html
    response = client.post("/admin/jobs/failed/broken-987654/requeue", data={"csrf_token": token}, follow_redirects=True)
    assert "broken-987654" in response.get_data(as_text=True)  # "not among the failed jobs", in place


def test_the_page_says_so_when_redis_is_down(jobs_app, monkeypatch):
    monkeypatch.setitem(jobs_app.config, "REDIS_URL", "redis://127.0.0.1:1/0")
    client = jobs_app.test_client()
    sign_in(client, "admin")
    html = _page(client)
    assert "data-redis-error" in html
