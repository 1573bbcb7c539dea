"""Timers through real rq workers on real Redis: a job scheduled at the due time fires the
timer exactly once; if Redis loses the job, the sweep still fires it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import REDIS_TEST_URL, service_missing
from tests.integration.helpers import call

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "jobs"


@pytest.fixture
def redis_conn():
    from redis import Redis
    from redis.exceptions import RedisError

    connection = Redis.from_url(REDIS_TEST_URL)
    try:
        connection.ping()
    except RedisError as exc:
        service_missing("Redis", str(exc))
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def rq_app(app, world, redis_conn, monkeypatch):
    """The test app with REDIS_URL set and the quick-timer fixture process deployed."""
    from app.db import commit
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    monkeypatch.setitem(app.config, "REDIS_URL", REDIS_TEST_URL)
    with app.app_context():
        report = deploy_folder(FIXTURE, runtime(), deployed_by="test")
        assert not report.issues, report.issues
        commit()
    return app


def _worker(app, tmp_path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=REDIS_TEST_URL,
        GRIDCASE_INSTANCE_PATH=str(tmp_path / "worker-instance"),
    )
    env["PYTHONFAULTHANDLER"] = "1"
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # a hung worker dumps its threads' stacks (faulthandler)
        stdout, stderr = process.communicate(timeout=30)
        raise AssertionError(f"{args} did not finish:\n{stdout[-3000:]}\n{stderr[-8000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _start(client, world) -> dict:
    response = call(client, world, "POST", "/api/cases", "member",
                    json={"process_id": "quick_timer", "title": "两秒超时", "grid": "S-C1-G1"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _case_id(app, reference: str) -> int:
    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        case_id = db.session.scalar(select(Case.id).where(Case.reference == reference))
        db.session.remove()
        return case_id


def _timer_events(app, reference: str) -> int:
    from app.cases.models import Case, CaseEvent
    from app.db import db

    with app.app_context():
        case_id = db.session.scalar(select(Case.id).where(Case.reference == reference))
        count = db.session.scalar(
            select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.kind == "timer_fired")
        )
        db.session.remove()
        return count


def test_a_scheduled_job_fires_the_timer_once(rq_app, client, world, redis_conn, tmp_path):
    from rq import Queue
    from rq.registry import ScheduledJobRegistry
    from rq.serializers import JSONSerializer

    case = _start(client, world)
    timer = case["timers"][0]
    registry = ScheduledJobRegistry(queue=Queue("gridcase-timers", connection=redis_conn, serializer=JSONSerializer))
    job_ids = registry.get_job_ids()
    assert job_ids == [f"timer-{_case_id(rq_app, case['reference'])}-{timer['task_id']}"], job_ids
    scheduled_for = registry.get_scheduled_time(job_ids[0])
    due = datetime.fromisoformat(timer["due_at"])
    assert abs((scheduled_for.replace(tzinfo=timezone.utc) - due).total_seconds()) < 1

    time.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds()) + 0.5)
    result = _worker(rq_app, tmp_path, "worker", "--burst")
    assert result.returncode == 0, result.stdout + result.stderr

    body = call(client, world, "GET", f"/api/cases/{case['reference']}").get_json()
    assert [t["task"] for t in body["tasks"]] == ["escalated"], result.stdout + result.stderr
    assert _timer_events(rq_app, case["reference"]) == 1

    # A second worker run and a sweep find nothing left to do.
    assert _worker(rq_app, tmp_path, "worker", "--burst").returncode == 0
    sweep = _worker(rq_app, tmp_path, "timers", "fire-due")
    assert sweep.returncode == 0 and "fired timers in 0 case(s)" in sweep.stdout
    assert _timer_events(rq_app, case["reference"]) == 1


def test_the_sweep_fires_a_timer_whose_job_redis_lost(rq_app, client, world, redis_conn, tmp_path):
    case = _start(client, world)
    redis_conn.flushdb()  # Redis forgets every scheduled job
    time.sleep(2.5)
    assert _worker(rq_app, tmp_path, "worker", "--burst").returncode == 0
    assert _timer_events(rq_app, case["reference"]) == 0  # no job, nothing fired yet
    sweep = _worker(rq_app, tmp_path, "timers", "fire-due")
    assert sweep.returncode == 0 and "fired timers in 1 case(s)" in sweep.stdout, sweep.stdout + sweep.stderr
    body = call(client, world, "GET", f"/api/cases/{case['reference']}").get_json()
    assert [t["task"] for t in body["tasks"]] == ["escalated"]
    assert _timer_events(rq_app, case["reference"]) == 1
