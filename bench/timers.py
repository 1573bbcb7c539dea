#!/usr/bin/env python
"""Timers at scale: N cases (default 10,000) whose timers all fall due in the same minute,
fired by 1, 2 and 4 real ``gridcase worker`` processes on PostgreSQL and Redis.

    .venv/bin/python bench/timers.py [--cases N] [--workers 1,2,4] [--spread S]
                                     [--sweep SECONDS] [--catch-up SECONDS] [--keep]

Builds the app against a throwaway PostgreSQL database (gridcase_bench_timers, dropped
first WITH (FORCE) and again at the end unless --keep) and a redis-server of its own on a
free port (no persistence), migrates, and deploys tests/fixtures/jobs/bench_timer: a user
task with an interrupting boundary timer at the time in the case data (``due_at``).

For each worker count it (not timed) starts N cases through the service layer
(app.cases.service.start_case, 250 per commit — exactly what a web request does, so each
start schedules its rq nudge after commit), with due times spread evenly over S seconds
(default 0: all due in the same second) starting a little after seeding ends; then starts
the workers (production settings: nudge jobs at due time, the sweep every
TIMER_SWEEP_SECONDS; the other registered periodic jobs are turned off so that only
timers are measured), and measures from the first due time until no timer of the round
is waiting. Lag = fired_at - due_at per timer (p50, p95, max). Redis is flushed and the
workers stopped between rounds.

Raw SpiffWorkflow firing the same N timers in memory (refresh_timers + do_engine_steps on
already-due workflows, no database, no queue) is measured in the same run for the ratio.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT, Path(__file__).resolve().parent):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import engine_throughput as et  # noqa: E402  (shared helpers: PostgreSQL admin, logging)

from tests.jobs.faults import RedisServer, descendants, registered_workers, wait_until  # noqa: E402

PROCESS_ID = "bench_timer"
FIXTURE = ROOT / "tests" / "fixtures" / "jobs"
BPMN_FILE = FIXTURE / PROCESS_ID / f"{PROCESS_ID}.bpmn"
PG_BENCH_DB = "gridcase_bench_timers"
BATCH = 250


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def pg_bench_url() -> str:
    et.pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
    et.pg_admin(f'CREATE DATABASE "{PG_BENCH_DB}"')
    base = et.PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{PG_BENCH_DB}"


# -- raw SpiffWorkflow ------------------------------------------------------------------------
def run_raw(cases: int) -> float:
    """Seconds for raw SpiffWorkflow to fire ``cases`` due timers in memory."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from SpiffWorkflow.util.task import TaskState

    parser = SpiffBpmnParser()
    parser.add_bpmn_files([str(BPMN_FILE)])
    spec, subspecs = parser.get_spec(PROCESS_ID), parser.get_subprocess_specs(PROCESS_ID)
    due = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    workflows = []
    for _ in range(cases):
        wf = BpmnWorkflow(spec, subspecs)
        wf.data["due_at"] = due
        wf.get_tasks(state=TaskState.READY)[0].data["due_at"] = due
        wf.do_engine_steps()
        workflows.append(wf)
    time.sleep(1.2)
    t0 = time.perf_counter()
    for wf in workflows:
        wf.refresh_timers()
        wf.do_engine_steps()
    seconds = time.perf_counter() - t0
    fired = sum(1 for wf in workflows if any(t.task_spec.bpmn_id == "escalated" for t in wf.get_tasks(state=TaskState.READY)))
    if fired != cases:
        raise RuntimeError(f"raw SpiffWorkflow fired {fired} of {cases} timers")
    return seconds


# -- the app ------------------------------------------------------------------------------------
def make_app(database_url: str, redis_url: str):
    os.environ["GRIDCASE_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="gridcase-bench-timers-")
    from flask_migrate import upgrade

    from app import create_app
    from app.db import commit
    from app.people import service as people
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench",
                      "REDIS_URL": redis_url})
    et.quiet_logging()
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        et.quiet_logging()
        street = people.add_grid_node("S", "测试街道", "street")
        community = people.add_grid_node("S-C1", "C1社区", "community", street)
        people.add_grid_node("S-C1-G1", "C1一网格", "grid", community)
        report = deploy_folder(FIXTURE, runtime(), deployed_by="bench")
        if report.issues:
            raise SystemExit(f"fixture processes do not deploy: {report.issues}")
        commit()
    return app


def seed(app, cases: int, first_due: datetime, spread: float) -> tuple[int, int, float]:
    """Start ``cases`` cases; returns (first id, last id, seconds).

    spread 0 (the default): one case is started through the service layer
    (app.cases.service.start_case) and the rest are row-for-row copies of it — case row
    with its serialized workflow, start event (hash chain recomputed for each copy's
    reference), work item and timer — each copy getting its rq nudge at the due time just
    as a started case does. Seeding 10,000 cases through the service on this shared
    2-CPU machine would take longer than the whole measurement.
    spread > 0: every case is started through the service layer (due times spread)."""
    from app.cases import service as cases_service
    from app.db import commit, db
    from app.runtime import runtime

    t0 = time.perf_counter()
    with app.app_context():
        rt = runtime()
        if spread:
            started = []
            for i in range(cases):
                due = first_due + timedelta(seconds=spread * i / max(1, cases - 1))
                started.append(cases_service.start_case(
                    rt, process_id=PROCESS_ID, title=f"定时基准 {i}", grid_code="S-C1-G1",
                    data={"due_at": due.isoformat()}, actor=None).id)
                if len(started) % BATCH == 0 or i == cases - 1:
                    commit()
            first, last = started[0], started[-1]
        else:
            template = cases_service.start_case(rt, process_id=PROCESS_ID, title="定时基准 0", grid_code="S-C1-G1",
                                                data={"due_at": first_due.isoformat()}, actor=None)
            commit()
            first = template.id
            last = clone(template.id, cases - 1, prefix=f"BT{first}") if cases > 1 else first
            commit()
        db.session.remove()
    return first, last, time.perf_counter() - t0


def clone(template_id: int, copies: int, prefix: str) -> int:
    """Copy the template case's rows ``copies`` times; returns the last new case id."""
    import hashlib

    from sqlalchemy import insert, select

    from app.cases.history import canonical_content
    from app.cases.models import Case, CaseEvent, Timer
    from app.db import db
    from app.queue import enqueue_at
    from app.work.models import WorkItem

    def rows(model, *where):
        table = model.__table__
        return [dict(row._mapping) for row in db.session.execute(select(table).where(*where))]

    case_row = rows(Case, Case.id == template_id)[0]
    event_rows = rows(CaseEvent, CaseEvent.case_id == template_id)
    item_rows = rows(WorkItem, WorkItem.case_id == template_id)
    timer_rows = rows(Timer, Timer.case_id == template_id)
    assert len(event_rows) == 1 and len(timer_rows) == 1, "the template is one started case with one timer"
    event = event_rows[0]
    last_id = template_id
    for offset in range(0, copies, 1000):
        chunk = range(offset, min(copies, offset + 1000))
        new_cases, new_events = [], []
        for n in chunk:
            reference = f"{prefix}-{n + 1:07d}"
            digest = hashlib.sha256(canonical_content(
                reference=reference, seq=1, kind=event["kind"], at=event["at"], actor=event["actor"],
                role=event["role"], payload=event["payload"], prev_hash=event["prev_hash"])).hexdigest()
            new_cases.append({**{k: v for k, v in case_row.items() if k != "id"}, "reference": reference,
                              "title": f"定时基准 {n + 1}", "last_event_hash": digest, "tracking_code": None})
            new_events.append(digest)
        ids = list(db.session.scalars(insert(Case.__table__).returning(Case.__table__.c.id, sort_by_parameter_order=True),
                                      new_cases))
        db.session.execute(insert(CaseEvent.__table__), [
            {**{k: v for k, v in event.items() if k != "id"}, "case_id": case_id, "hash": digest}
            for case_id, digest in zip(ids, new_events)])
        db.session.execute(insert(WorkItem.__table__), [
            {**{k: v for k, v in item.items() if k != "id"}, "case_id": case_id} for case_id in ids for item in item_rows])
        db.session.execute(insert(Timer.__table__), [
            {**{k: v for k, v in timer_rows[0].items() if k != "id"}, "case_id": case_id} for case_id in ids])
        db.session.commit()
        timer = timer_rows[0]
        for case_id in ids:  # what start_case schedules after its commit
            enqueue_at(timer["due_at"], "app.jobs.fire_case_timers_job", case_id, job_id=f"timer-{case_id}-{timer['task_id']}")
        last_id = ids[-1]
    return last_id


def waiting(app, first: int, last: int) -> int:
    from sqlalchemy import func, select

    from app.cases.models import Timer
    from app.db import db

    with app.test_request_context("/", method="GET"):
        count = db.session.scalar(select(func.count()).select_from(Timer).where(
            Timer.case_id.between(first, last), Timer.state == "waiting"))
        db.session.remove()
    return count


def lags(app, first: int, last: int) -> tuple[list[float], datetime]:
    from sqlalchemy import select

    from app.cases.models import Timer
    from app.db import db

    with app.app_context():
        rows = db.session.execute(select(Timer.due_at, Timer.fired_at).where(
            Timer.case_id.between(first, last), Timer.state == "fired")).all()
        db.session.remove()
    return [(fired - due).total_seconds() for due, fired in rows], max(fired for _, fired in rows)


def events_per_case(app, first: int, last: int) -> tuple[int, int]:
    from sqlalchemy import func, select

    from app.cases.models import CaseEvent
    from app.db import db

    with app.app_context():
        fired = db.session.scalar(select(func.count()).select_from(CaseEvent).where(
            CaseEvent.case_id.between(first, last), CaseEvent.kind == "timer_fired"))
        db.session.remove()
    return fired, last - first + 1


def start_workers(count: int, database_url: str, redis_url: str, instance: Path, logs: Path) -> list[subprocess.Popen]:
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, GRIDCASE_INSTANCE_PATH=str(instance))
    processes = []
    for i in range(count):
        with open(logs / f"worker-{count}-{i}.log", "ab") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=ROOT,
                                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return processes


def stop_workers(processes: list[subprocess.Popen]) -> None:
    import signal

    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            for pid in [process.pid, *descendants(process.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--spread", type=float, default=0.0, help="seconds over which the due times spread (< 60)")
    parser.add_argument("--sweep", type=int, default=30, help="TIMER_SWEEP_SECONDS of the workers")
    parser.add_argument("--catch-up", type=float, default=None,
                        help="TIMER_NUDGE_CATCH_UP_SECONDS of the workers (default: the app's default)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="gridcase-bench-timers-work-"))
    redis = RedisServer(work / "redis").start()
    database_url = pg_bench_url()
    try:
        app = make_app(database_url, redis.url)
        from app.jobs import PERIODIC_JOBS, TIMER_SWEEP

        others = sorted(name for name in PERIODIC_JOBS if name != TIMER_SWEEP)
        instance = work / "worker-instance"
        instance.mkdir()
        catch_up = f"TIMER_NUDGE_CATCH_UP_SECONDS = {args.catch_up}\n" if args.catch_up is not None else ""
        (instance / "config.py").write_text(
            f"SECRET_KEY = 'bench'\nTIMER_SWEEP_SECONDS = {args.sweep}\n{catch_up}"
            f"PERIODIC_JOB_SECONDS = {{{', '.join(f'{name!r}: 0' for name in others)}}}\n"
        )
        print(f"bench/timers.py: {args.cases} cases per round, due over {args.spread:g} s, workers {counts}, "
              f"sweep every {args.sweep} s, catch-up {args.catch_up if args.catch_up is not None else app.config['TIMER_NUDGE_CATCH_UP_SECONDS']} s; "
              f"PostgreSQL {et.pg_server_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; periodic jobs turned off: {', '.join(others) or '-'}")

        raw_seconds = run_raw(args.cases)
        raw_rate = args.cases / raw_seconds
        print(f"raw SpiffWorkflow, in memory: {args.cases} timers fired in {raw_seconds:.2f} s ({raw_rate:,.0f}/s)")

        rows = []
        seed_rate = None
        for count in counts:
            redis.connection().flushall()
            # Due a little after seeding ends and the workers are up (estimated from the last round).
            estimate = args.cases / seed_rate if seed_rate else args.cases / (20 if args.spread else 400)
            first_due = datetime.now(timezone.utc) + timedelta(seconds=estimate * 1.3 + 25)
            first, last, seconds = seed(app, args.cases, first_due, args.spread)
            seed_rate = args.cases / seconds
            print(f"  {count} worker(s): seeded {args.cases} cases in {seconds:.0f} s ({seed_rate:.0f}/s, not measured); "
                  f"first due {first_due:%H:%M:%S}", flush=True)
            processes = start_workers(count, database_url, redis.url, instance, work)
            wait_until(lambda: registered_workers(redis.url) >= count, 120, f"{count} workers to start")
            if datetime.now(timezone.utc) > first_due:
                print("  warning: the timers fell due before the workers were up; lag includes start-up")
            time.sleep(max(0.0, (first_due - datetime.now(timezone.utc)).total_seconds()))
            while waiting(app, first, last):
                time.sleep(0.25)
            lag, last_fired = lags(app, first, last)
            all_fired_s = (last_fired - first_due).total_seconds()
            fired_events, total = events_per_case(app, first, last)
            stop_workers(processes)
            rows.append((count, all_fired_s, args.cases / max(all_fired_s, 1e-9), pct(lag, 50), pct(lag, 95), max(lag),
                         fired_events == total))
            print(f"  load average {os.getloadavg()[0]:.1f}")
            print(f"  {count} worker(s): all fired {all_fired_s:.1f} s after the first due time; "
                  f"lag p95 {pct(lag, 95):.1f} s; timer_fired events {fired_events} for {total} cases", flush=True)

        print()
        print(f"| workers | all {args.cases:,} fired after | fired/s | lag p50 | lag p95 | lag max | one event per timer | vs raw SpiffWorkflow ({raw_rate:,.0f}/s) |")
        print("|---:|---:|---:|---:|---:|---:|:-:|---:|")
        for count, all_s, rate, p50, p95, top, once in rows:
            print(f"| {count} | {all_s:.1f} s | {rate:,.0f} | {p50:.1f} s | {p95:.1f} s | {top:.1f} s | "
                  f"{'yes' if once else 'NO'} | {rate / raw_rate:.3f} |")
    finally:
        redis.kill()
        if not args.keep:
            try:
                from app.db import db

                with app.app_context():  # noqa: F821 - set when make_app succeeded
                    db.engine.dispose()
            except Exception:  # noqa: BLE001
                pass
            et.pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
