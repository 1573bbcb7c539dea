"""Fault tests: real ``gridcase worker`` processes on a Redis server of our own, against the
test database (SQLite and PostgreSQL). Whatever happens to a worker or to Redis, every
due timer fires exactly once, no case is corrupted and no event is duplicated.

The worker instance config sweeps every second (TIMER_SWEEP_SECONDS = 1), so a lost
nudge is caught within a second or two. ``slow_timer`` runs a script on its timer path
that takes as long as its case data asks, so a worker can be killed mid-firing."""
from __future__ import annotations

import signal
import time
from datetime import datetime, timezone

import pytest

from tests.conftest import service_missing
from tests.integration.helpers import call
from tests.jobs.faults import (
    FIXTURE, RedisServer, Workers, all_fired, descendants, case_ids, check_cases, registered_workers, timer_fired_events,
    wait_until,
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except (FileNotFoundError, AssertionError) as exc:
        service_missing("redis-server (to run our own)", str(exc))
    yield server
    server.kill()


@pytest.fixture
def fault_app(app, world, redis_server, monkeypatch):
    """The test app on our Redis (flushed), with the job fixture processes deployed."""
    from app.db import commit
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test that failed mid-restart left it down
    redis_server.connection().flushall()
    monkeypatch.setitem(app.config, "REDIS_URL", redis_server.url)
    with app.app_context():
        report = deploy_folder(FIXTURE, runtime(), deployed_by="test")
        assert not report.issues, report.issues
        commit()
    return app


@pytest.fixture
def workers(fault_app, redis_server, tmp_path):
    pool = Workers(fault_app.config["SQLALCHEMY_DATABASE_URI"], redis_server.url, tmp_path)
    yield pool
    pool.stop_all()


def _start(client, world, process_id: str = "quick_timer", **data) -> dict:
    response = call(client, world, "POST", "/api/cases", "member",
                    json={"process_id": process_id, "title": "超时测试", "grid": "S-C1-G1", "data": data})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _due(case: dict) -> datetime:
    return datetime.fromisoformat(case["timers"][0]["due_at"])


def _sleep_until(moment: datetime, extra: float = 0.0) -> None:
    time.sleep(max(0.0, (moment - datetime.now(timezone.utc)).total_seconds()) + extra)


def _wait_for_worker(workers: Workers, redis_url: str, count: int = 1) -> None:
    wait_until(lambda: registered_workers(redis_url) >= count, 60,
               f"{count} worker(s) to register:\n" + "\n".join(workers.log(p)[-2000:] for p in workers.processes))


def _started_jobs(redis_server) -> list[str]:
    from rq import Queue
    from rq.registry import StartedJobRegistry
    from rq.serializers import JSONSerializer

    connection = redis_server.connection()
    return [job_id for name in ("gridcase-timers", "gridcase")
            for job_id in StartedJobRegistry(queue=Queue(name, connection=connection, serializer=JSONSerializer)).get_job_ids(cleanup=False)]


def _running_for(redis_server, seconds: float) -> list[str]:
    """Timer jobs (nudges, sweeps) that started more than ``seconds`` ago and still run."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    now = datetime.now(timezone.utc)
    ids = [job_id for job_id in _started_jobs(redis_server) if job_id.startswith(("timer-", "periodic-timers-sweep-"))]
    jobs = Job.fetch_many(ids, connection=redis_server.connection(), serializer=JSONSerializer)
    return [job.id for job in jobs if job is not None and job.started_at is not None
            and (now - job.started_at.replace(tzinfo=timezone.utc)).total_seconds() > seconds
            and job.get_status() == "started"]


def _logs(workers: Workers) -> str:
    return "\n".join(f"--- worker {i}\n{workers.log(p)[-4000:]}" for i, p in enumerate(workers.processes))


def test_kill_9_in_the_middle_of_firing(fault_app, client, world, workers, redis_server):
    first = workers.start("first")
    _wait_for_worker(workers, redis_server.url)
    case = _start(client, world, "slow_timer", slow_rounds=1000)  # a few seconds of script on the timer path
    reference = case["reference"]

    _sleep_until(_due(case))
    # Firing = the nudge or a sweep that has been running for 2 s (the script takes longer).
    wait_until(lambda: _running_for(redis_server, 2.0), 30, "the timer to be firing\n" + _logs(workers))
    assert descendants(first.pid), "a work horse is running"
    assert timer_fired_events(fault_app, [reference]) == 0
    workers.kill9(first)  # worker and work horse die mid-transaction
    time.sleep(1)
    assert timer_fired_events(fault_app, [reference]) == 0, "a killed transaction must leave nothing behind"

    second = workers.start("second")
    wait_until(lambda: all_fired(fault_app, [reference]), 60, "the timer to fire after the restart\n" + _logs(workers))
    time.sleep(2)  # retries of the killed job and later sweeps find nothing left to do
    assert timer_fired_events(fault_app, [reference]) == 1
    check_cases(fault_app, [reference])
    assert workers.terminate(second) == 0


def test_flushall_with_timers_pending(fault_app, client, world, workers, redis_server):
    workers.start("only")
    _wait_for_worker(workers, redis_server.url)
    references = [_start(client, world)["reference"] for _ in range(4)]
    redis_server.connection().flushall()  # every scheduled nudge is gone
    wait_until(lambda: all_fired(fault_app, references), 60, "the sweep to fire every timer\n" + _logs(workers))
    # And the worker goes on working normally afterwards.
    later = _start(client, world)["reference"]
    wait_until(lambda: all_fired(fault_app, [later]), 60, "a timer scheduled after the flush\n" + _logs(workers))
    time.sleep(1.5)
    references.append(later)
    assert timer_fired_events(fault_app, references) == len(references)
    check_cases(fault_app, references)


def test_redis_restart_while_the_worker_runs(fault_app, client, world, workers, redis_server):
    worker = workers.start("only")
    _wait_for_worker(workers, redis_server.url)
    references = [_start(client, world)["reference"] for _ in range(3)]
    redis_server.kill()  # no persistence: the scheduled jobs die with it
    time.sleep(3)        # the timers fall due while Redis is down
    assert timer_fired_events(fault_app, references) == 0
    redis_server.start()
    wait_until(lambda: all_fired(fault_app, references), 60, "the timers to fire after Redis came back\n" + _logs(workers))
    later = _start(client, world)["reference"]
    wait_until(lambda: all_fired(fault_app, [later]), 60, "a timer scheduled after the restart\n" + _logs(workers))
    assert worker.poll() is None, "the same worker process keeps working:\n" + _logs(workers)
    time.sleep(1.5)
    references.append(later)
    assert timer_fired_events(fault_app, references) == len(references)
    check_cases(fault_app, references)


def test_worker_stopped_for_a_while_then_started_again(fault_app, client, world, workers, redis_server):
    first = workers.start("first")
    _wait_for_worker(workers, redis_server.url)
    slow = _start(client, world, "slow_timer", slow_rounds=1000)
    _sleep_until(_due(slow))
    wait_until(lambda: _running_for(redis_server, 2.0), 30, "the timer to be firing\n" + _logs(workers))
    # SIGTERM mid-job: the worker finishes the job in hand, then exits cleanly.
    first.send_signal(signal.SIGTERM)
    assert workers.wait(first, 60) == 0, _logs(workers)
    assert timer_fired_events(fault_app, [slow["reference"]]) == 1, "the job in hand is finished:\n" + _logs(workers)

    references = [_start(client, world)["reference"] for _ in range(4)]
    time.sleep(4)  # all of them fall due with no worker running
    assert timer_fired_events(fault_app, references) == 0
    workers.start("second")
    wait_until(lambda: all_fired(fault_app, references), 60, "the overdue timers to fire\n" + _logs(workers))
    time.sleep(1.5)
    assert timer_fired_events(fault_app, references) == len(references)
    check_cases(fault_app, references)
    check_cases(fault_app, [slow["reference"]])


def test_two_workers_racing_for_the_same_timers(fault_app, client, world, workers, redis_server):
    from app.queue import enqueue_at

    workers.start("a")
    workers.start("b")
    _wait_for_worker(workers, redis_server.url, 2)
    cases = [_start(client, world) for _ in range(8)]
    references = [case["reference"] for case in cases]
    ids = case_ids(fault_app, references)
    with fault_app.app_context():
        for case in cases:  # two more nudges per timer, due at the same moment: the workers race
            for copy in ("x", "y"):
                enqueue_at(_due(case), "app.jobs.fire_case_timers_job", ids[case["reference"]],
                           job_id=f"race-{copy}-{ids[case['reference']]}")
    wait_until(lambda: all_fired(fault_app, references), 60, "every timer to fire\n" + _logs(workers))
    time.sleep(2)
    assert timer_fired_events(fault_app, references) == len(references)
    check_cases(fault_app, references)
    from rq.job import Job
    from rq.serializers import JSONSerializer

    def race_jobs():
        return Job.fetch_many([f"race-{copy}-{ids[r]}" for r in references for copy in ("x", "y")],
                              connection=redis_server.connection(), serializer=JSONSerializer)

    wait_until(lambda: all(job.get_status() == "finished" for job in race_jobs()), 60,
               "the duplicate nudges to run\n" + _logs(workers))
    assert len({job.worker_name for job in race_jobs()}) == 2, "both workers ran duplicate nudges"
    assert timer_fired_events(fault_app, references) == len(references)
