#!/usr/bin/env python
"""Replay speed: verifying closed cases (hash chain + deterministic replay) against raw
SpiffWorkflow executing the same steps in memory.

    .venv/bin/python bench/replay.py [--cases 1000] [--postgres] [--rounds 10]

Setup (not measured): N closed bpmn/grid_quick cases are created through the service
layer (app.cases.service.start_case, app.work.service.claim/complete, one commit per
case) on a temporary SQLite file (default) or a throwaway PostgreSQL database
(--postgres). Each case: case_started, then for each of 5 user tasks task_claimed +
task_completed = 11 events, 6 of which move the workflow; "self" and "dispatch" paths
alternate.

Measured: the cases are split into --rounds slices; each round runs every mode below on
its slice, back to back, so that the machine's load drifting between modes does not skew
the ratios. The table shows totals and the median (min–max) of the per-round ratios to (a).
(a) raw SpiffWorkflow in memory: BpmnWorkflow + the same start data and the same 5
    completions (set_data, run, do_engine_steps), no checks, no serialization — the baseline;
(b) chain only: recompute every event's SHA-256 and check the links (no replay);
(c) replay in memory: workflows.replay.Replayer.verify on records already read —
    chain + replay through the engine facade (form and role checks, case clock) with a
    save/load round trip per workflow step as the application does, compare every event's
    effects and data changes, and the final state structurally;
(d) (c) without the per-step save/load round trip;
(e) `gridcase case verify --all`: app.audit.service.verify_all — (c) plus reading the
    cases, events, stored states and versions from the database.
events/s counts all events; steps/s counts workflow steps (start + completions).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.metadata import version as dist_version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROCESS_ID = "grid_quick"
PROCESS_FOLDER = ROOT / "bpmn" / PROCESS_ID
PG_ADMIN_URL = os.environ.get("GRIDCASE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_BENCH_DB = "gridcase_bench_replay"
START_DATA = {"source": "网格巡查"}
# form data: a copy of tests/grid_quick_data.py (the bench does not import tests/)
REGISTER = {"category": "garbage", "description": "小区东门垃圾堆放三天未清运", "location": "一网格3栋东侧", "verified": True}
REVIEW_SELF = {"decision": "self", "opinion": "社区自行处置"}
REVIEW_DISPATCH = {"decision": "dispatch", "opinion": "派城管处置"}
HANDLE = {"result": "已清运"}
REINSPECT = {"passed": True, "note": "已清理"}
CLOSE = {"summary": "办结", "satisfaction": "satisfied"}
SELF_PATH = [("register", "member", REGISTER), ("review", "community", REVIEW_SELF),
             ("community_handle", "community", HANDLE), ("reinspect", "member", REINSPECT), ("close", "chief", CLOSE)]
DISPATCH_PATH = [("register", "member", REGISTER), ("review", "community", REVIEW_DISPATCH),
                 ("department_handle", "department", HANDLE), ("reinspect", "member", REINSPECT), ("close", "chief", CLOSE)]
PEOPLE = {"member": ("grid_member", "S-C1-G1"), "community": ("community_staff", "S-C1"),
          "department": ("department_staff", "S"), "chief": ("duty_chief", "S")}


def path_for(i: int):
    return SELF_PATH if i % 2 == 0 else DISPATCH_PATH


def quiet_logging() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict) + ["spiff", "sqlalchemy", "alembic"]:
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class Row:
    label: str
    seconds: float
    cases: int
    events: int
    steps: int


# --- setup ------------------------------------------------------------------------------
def make_app(database_url: str):
    os.environ["GRIDCASE_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="gridcase-bench-replay-")
    from flask_migrate import upgrade

    from app import create_app
    from app.db import commit
    from app.people import service as people
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench"})
    quiet_logging()
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        quiet_logging()
        street = people.add_grid_node("S", "测试街道", "street")
        community = people.add_grid_node("S-C1", "C1社区", "community", street)
        people.add_grid_node("S-C1-G1", "C1一网格", "grid", community)
        for username, (role, grid) in PEOPLE.items():
            people.grant_role(people.create_user(username, username, None), role, people.grid_by_code(grid))
        report = deploy_folder(PROCESS_FOLDER, runtime(), deployed_by="bench")
        if report.issues:
            raise RuntimeError(f"deploying {PROCESS_FOLDER} failed: {report.issues}")
        commit()
    return app


def create_cases(app, n: int) -> None:
    from sqlalchemy import select

    from app.cases import service as cases
    from app.db import commit, db
    from app.people.models import User
    from app.runtime import runtime
    from app.work import service as work
    from app.work.models import OPEN_STATES, WorkItem

    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
    with app.app_context():
        rt = runtime()
        users = {u.username: u for u in db.session.scalars(select(User))}
        for i in range(n):
            at = t0 + timedelta(minutes=i)
            case = cases.start_case(rt, process_id=PROCESS_ID, title=f"bench {i}", grid_code="S-C1-G1",
                                    data=START_DATA, actor=users["member"], at=at)
            commit()
            for spec, who, data in path_for(i):
                at += timedelta(minutes=5)
                item_id = db.session.scalar(select(WorkItem.id).where(
                    WorkItem.case_id == case.id, WorkItem.spec_id == spec, WorkItem.state.in_(OPEN_STATES)))
                work.claim(item_id, users[who], at=at)
                work.complete(rt, item_id, users[who], data, at=at + timedelta(minutes=1))
            commit()  # one transaction per case: creation is not what is measured
            if (i + 1) % 200 == 0:
                print(f"  created {i + 1}/{n} cases", file=sys.stderr)
                db.session.expunge_all()
                users = {u.username: u for u in db.session.scalars(select(User))}
        db.session.remove()


# --- measurements -------------------------------------------------------------------------
def run_raw(n: int, first: int = 0) -> Row:
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from SpiffWorkflow.util.task import TaskState

    parser = SpiffBpmnParser()
    parser.add_bpmn_files([str(PROCESS_FOLDER / f"{PROCESS_ID}.bpmn")])
    spec, subspecs = parser.get_spec(PROCESS_ID), parser.get_subprocess_specs(PROCESS_ID)
    started = time.perf_counter()
    for i in range(first, first + n):
        wf = BpmnWorkflow(spec, subspecs)
        wf.task_tree.data.update(START_DATA)
        for task in wf.get_tasks(state=TaskState.READY):
            task.data.update(START_DATA)
        wf.do_engine_steps()
        for spec_id, _who, data in path_for(i):
            task = next(t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == spec_id)
            task.set_data(**data)
            task.run()
            wf.do_engine_steps()
        assert wf.is_completed()
    return Row("(a) raw SpiffWorkflow, same steps, in memory", time.perf_counter() - started, n, 11 * n, 6 * n)


def case_ids(app) -> list[int]:
    from sqlalchemy import select

    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        ids = list(db.session.scalars(select(Case.id).order_by(Case.id)))
        db.session.remove()
    return ids


def read_records(app):
    from sqlalchemy import select

    from app.audit import service
    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        records = [service.record_of(case) for case in db.session.scalars(select(Case).order_by(Case.id))]
        db.session.remove()
    return records


def run_chain(records) -> Row:
    from workflows.replay import check_chain

    started = time.perf_counter()
    for record in records:
        if check_chain(record) is not None:
            raise RuntimeError(f"{record.reference} does not verify")
    return _row("(b) hash chain only", started, records)


def run_replay(app, records, roundtrip: bool) -> Row:
    from app.audit.service import definition_source
    from app.runtime import runtime
    from workflows.replay import Replayer

    with app.app_context():
        replayer = Replayer(runtime().engine, definition_source(runtime()), roundtrip=roundtrip)
        for record in records[:5]:  # warm the parsed-definition cache
            replayer.verify(record)
        started = time.perf_counter()
        for record in records:
            verdict = replayer.verify(record)
            if not verdict.ok:
                raise RuntimeError(verdict.line())
        row = _row("(c) chain + replay + compare, in memory" if roundtrip else
                   "(d) as (c), no save/load per step", started, records)
    return row


def run_verify_all(app, records, after_id: int = 0) -> Row:
    from app.audit.service import verify_all
    from app.db import db
    from app.runtime import runtime

    with app.app_context():
        started = time.perf_counter()
        bad = [v.line() for v in verify_all(runtime(), after_id=after_id, limit=len(records)) if not v.ok]
        row = _row("(e) gridcase case verify --all (reads the DB)", started, records)
        db.session.remove()
    if bad:
        raise RuntimeError("\n".join(bad[:5]))
    return row


def _row(label: str, started: float, records) -> Row:
    seconds = time.perf_counter() - started
    events = sum(len(r.events) for r in records)
    steps = sum(1 for r in records for e in r.events if e.kind in ("case_started", "task_completed"))
    return Row(label, seconds, len(records), events, steps)


def add(total: Row | None, row: Row) -> Row:
    if total is None:
        return row
    return Row(total.label, total.seconds + row.seconds, total.cases + row.cases, total.events + row.events,
               total.steps + row.steps)


def print_table(rows: list[Row], ratios: list[list[float]], database: str, rounds: int) -> None:
    base = rows[0]
    print()
    print(f"Replay of {base.cases} closed grid_quick cases ({base.events // base.cases} events, "
          f"{base.steps // base.cases} workflow steps each); cases created on {database}; "
          f"modes interleaved over {rounds} rounds")
    print("| mode | cases/s | events/s | steps/s | ms per case | × (a) total | × (a) median of rounds (min–max) |")
    print("|---|---|---|---|---|---|---|")
    for row, per_round in zip(rows, ratios):
        cps = row.cases / row.seconds
        spread = sorted(per_round)
        print(f"| {row.label} | {cps:,.0f} | {row.events / row.seconds:,.0f} | {row.steps / row.seconds:,.0f} | "
              f"{row.seconds / row.cases * 1000:.3f} | {cps / (base.cases / base.seconds):.3f} | "
              f"{statistics.median(spread):.3f} ({spread[0]:.3f}–{spread[-1]:.3f}) |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (slices of the cases)")
    parser.add_argument("--postgres", action="store_true", help="create the cases on PostgreSQL instead of SQLite")
    args = parser.parse_args(argv)
    quiet_logging()
    scratch = tempfile.mkdtemp(prefix="gridcase-bench-replay-db-")
    if args.postgres:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')
        url, database = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}", "PostgreSQL"
    else:
        url, database = f"sqlite:///{scratch}/bench.sqlite3", "SQLite"
    try:
        app = make_app(url)
        print(f"creating {args.cases} closed cases through the service layer on {database} (not measured)…",
              file=sys.stderr)
        t0 = time.perf_counter()
        create_cases(app, args.cases)
        print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        load_before = os.getloadavg()
        records = read_records(app)
        ids = case_ids(app)
        # The machine is shared and its load drifts: run the modes back to back on one slice
        # of the cases at a time, so each round's ratios compare like with like.
        size = max(1, len(records) // args.rounds)
        totals: list[Row | None] = [None] * 5
        ratios: list[list[float]] = [[] for _ in range(5)]
        for first in range(0, len(records), size):
            part = records[first:first + size]
            round_rows = [
                run_raw(len(part), first),
                run_chain(part),
                run_replay(app, part, True),
                run_replay(app, part, False),
                run_verify_all(app, part, after_id=ids[first] - 1),
            ]
            for k, row in enumerate(round_rows):
                totals[k] = add(totals[k], row)
                ratios[k].append(round_rows[0].seconds / row.seconds)
        print(f"Python {platform.python_version()}, SpiffWorkflow {dist_version('spiffworkflow')}, "
              f"{os.cpu_count()} CPUs, load average before/after: {load_before} / {os.getloadavg()}")
        print_table(totals, ratios, database, len(ratios[0]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.postgres:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
