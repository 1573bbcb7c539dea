#!/usr/bin/env python
"""Engine throughput: bpmn/grid_quick driven to completion four ways.

    .venv/bin/python bench/engine_throughput.py [--cases N] [--raw-cases M] [--skip-postgres]
                                                [--modes abcd[e]] [--profile auto|always|never]

(a) raw SpiffWorkflow in memory (SpiffBpmnParser + BpmnWorkflow, default script
    engine, no serialization, no database) -- the baseline;
(b) the service layer (app.cases.service.start_case, app.work.service.complete)
    on a temporary SQLite file, one transaction per operation;
(c) the same on a throwaway PostgreSQL database (gridcase_bench, dropped at the end);
(d) HTTP through Flask's test client on SQLite, with bearer tokens;
(e) optional (--modes abcde): the engine facade with a save/load round trip per
    completion and no database -- what (b)-(d) could reach if SQL were free.

Every case takes the 5-user-task path through the exclusive gateway, "self" and
"dispatch" alternating case by case. Throughputs are printed as ratios of (a);
the issue's target is (c) >= 0.3 x (a). When (c) misses it (or --profile always),
(c) is run again under low-overhead wall-clock timers around the service and
engine steps, then under cProfile, and the time is attributed to groups (SQL,
serialization, engine, JSON, form validation, hashing, ...).

Latency "per completion":
  (a)   get READY manual tasks + set_data + run + do_engine_steps;
  (e)   Engine.load + CaseRun.complete + Engine.dump + Engine.plain;
  (b,c) app.work.service.complete(...) + app.db.commit(); the client-style work-item
        lookup (SELECT WorkItem.id by case + spec_id + open state, its own read
        transaction) is timed separately ("lookup") and NOT included;
  (d)   the POST /api/work-items/<id>/complete request only.
cases/s always covers the whole loop (start, lookups, completions, commits).
"""
from __future__ import annotations

import argparse
import cProfile
import logging
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROCESS_ID = "grid_quick"
PROCESS_FOLDER = ROOT / "bpmn" / PROCESS_ID
BPMN_FILE = PROCESS_FOLDER / f"{PROCESS_ID}.bpmn"
GRID = "S-C1-G1"
PG_ADMIN_URL = os.environ.get("GRIDCASE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_BENCH_DB = "gridcase_bench"
TARGET_RATIO = 0.3

# --- form data: a copy of tests/integration/helpers.py (the bench does not import tests/) ---
REGISTER = {"category": "garbage", "description": "小区东门垃圾堆放三天未清运", "location": "一网格3栋东侧", "verified": True}
REVIEW_SELF = {"decision": "self", "opinion": "社区自行处置"}
REVIEW_DISPATCH = {"decision": "dispatch", "opinion": "派城管处置"}
HANDLE = {"result": "已清运"}
REINSPECT = {"passed": True, "note": "已清理"}
CLOSE = {"summary": "办结", "satisfaction": "satisfied"}

# task (BPMN id) -> (who does it, data)
SELF_PATH = [
    ("register", "member", REGISTER),
    ("review", "community", REVIEW_SELF),
    ("community_handle", "community", HANDLE),
    ("reinspect", "member", REINSPECT),
    ("close", "chief", CLOSE),
]
DISPATCH_PATH = [
    ("register", "member", REGISTER),
    ("review", "community", REVIEW_DISPATCH),
    ("department_handle", "department", HANDLE),
    ("reinspect", "member", REINSPECT),
    ("close", "chief", CLOSE),
]

# username -> (role, grid code)
PEOPLE = {
    "member": ("grid_member", "S-C1-G1"),
    "community": ("community_staff", "S-C1"),
    "department": ("department_staff", "S"),
    "supervisor": ("supervisor", "S"),
    "chief": ("duty_chief", "S"),
}


def path_for(i: int):
    return SELF_PATH if i % 2 == 0 else DISPATCH_PATH


def quiet_logging() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict) + ["spiff", "sqlalchemy", "werkzeug", "flask"]:
        logging.getLogger(name).setLevel(logging.WARNING)


# --- results ------------------------------------------------------------------

@dataclass
class Result:
    mode: str
    label: str
    cases: int = 0
    seconds: float = 0.0
    completion_latencies: list[float] = field(default_factory=list)
    start_latencies: list[float] = field(default_factory=list)
    lookup_latencies: list[float] = field(default_factory=list)
    sql: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    transactions: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    checkouts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    skipped: str | None = None

    @property
    def completions(self) -> int:
        return len(self.completion_latencies)

    @property
    def cases_per_s(self) -> float:
        return self.cases / self.seconds if self.seconds else 0.0

    @property
    def completions_per_s(self) -> float:
        return self.completions / self.seconds if self.seconds else 0.0

    @property
    def completion_only_per_s(self) -> float:
        total = sum(self.completion_latencies)
        return self.completions / total if total else 0.0


def pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def ms(values: list[float], p: int) -> str:
    return f"{pct(values, p) * 1000:.3f}" if values else "-"


def mean(values: list[int]) -> str:
    return f"{statistics.fmean(values):.1f}" if values else "-"


# --- (a) raw SpiffWorkflow ------------------------------------------------------

def run_raw(cases: int, warmup: int) -> Result:
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from SpiffWorkflow.util.task import TaskState

    parser = SpiffBpmnParser()
    parser.add_bpmn_files([str(BPMN_FILE)])
    spec = parser.get_spec(PROCESS_ID)
    subspecs = parser.get_subprocess_specs(PROCESS_ID)
    result = Result("a", "(a) raw SpiffWorkflow, in memory")
    perf = time.perf_counter

    def one_case(i: int, latencies: list[float]) -> None:
        wf = BpmnWorkflow(spec, subspecs)
        wf.do_engine_steps()
        for spec_id, _who, data in path_for(i):
            t0 = perf()
            task = next(t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == spec_id)
            task.set_data(**data)
            task.run()
            wf.do_engine_steps()
            latencies.append(perf() - t0)
        if not wf.is_completed():
            raise RuntimeError(f"raw case {i} did not end")

    scratch: list[float] = []
    for i in range(warmup):
        one_case(i, scratch)
    t0 = perf()
    for i in range(cases):
        one_case(i, result.completion_latencies)
    result.seconds = perf() - t0
    result.cases = cases
    return result


# --- (e) optional: the engine facade with a save/load round trip, no database ----

def run_facade(cases: int, warmup: int) -> Result:
    """What the service layer asks of the engine per request, without SQL:
    Engine.load -> CaseRun.complete (checks, form, run, steps, outcome) -> Engine.dump
    + Engine.plain(data). The ceiling of the current design for (b)-(d)."""
    from datetime import datetime, timezone

    from workflows.definitions import load_folder
    from workflows.engine import Engine
    from workflows.roles import RoleCatalogue

    roles = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")
    loaded = load_folder(PROCESS_FOLDER, roles)
    definition = next(d for d in loaded.definitions if d.process_id == PROCESS_ID)
    engine = Engine(roles)
    result = Result("e", "(e) facade + save/load, no DB")
    perf = time.perf_counter

    def one_case(i: int, latencies: list[float]) -> None:
        at = datetime.now(timezone.utc)
        run, outcome = engine.start(definition, {}, at=at)
        saved = engine.dump(run)
        engine.plain(dict(outcome.data))
        for spec_id, _who, data in path_for(i):
            t0 = perf()
            task = next(t for t in outcome.ready if t.spec_id == spec_id)  # the work item
            run = engine.load(definition, saved)
            outcome = run.complete(task.task_id, data, at=at, role=task.role)
            saved = engine.dump(run)
            engine.plain(dict(outcome.data))
            latencies.append(perf() - t0)
        if not outcome.ended:
            raise RuntimeError(f"facade case {i} did not end")

    scratch: list[float] = []
    for i in range(warmup):
        one_case(i, scratch)
    t0 = perf()
    for i in range(cases):
        one_case(i, result.completion_latencies)
    result.seconds = perf() - t0
    result.cases = cases
    return result


# --- application setup (b, c, d) ------------------------------------------------

class SqlCounter:
    """Counts statements (before_cursor_execute), commits and pool checkouts on an engine."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.statements = self.commits = self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *args, **kwargs) -> None:
        self.statements += 1

    def _commit(self, *args, **kwargs) -> None:
        self.commits += 1

    def _checkout(self, *args, **kwargs) -> None:
        self.checkouts += 1

    def snapshot(self) -> tuple[int, int, int]:
        return self.statements, self.commits, self.checkouts


def record_sql(result: Result, phase: str, counter: SqlCounter, before: tuple[int, int, int]) -> None:
    after = counter.snapshot()
    result.sql[phase].append(after[0] - before[0])
    result.transactions[phase].append(after[1] - before[1])
    result.checkouts[phase].append(after[2] - before[2])


@dataclass
class Bench:
    app: object
    instance_dir: str
    users: dict        # username -> user id
    tokens: dict       # username -> bearer token
    counter: SqlCounter


def make_app(database_url: str) -> Bench:
    instance_dir = tempfile.mkdtemp(prefix="gridcase-bench-instance-")
    os.environ["GRIDCASE_INSTANCE_PATH"] = instance_dir
    from flask_migrate import upgrade

    from app import create_app
    from app.db import commit, db
    from app.people import service as people
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench"})
    quiet_logging()  # create_app configures INFO
    users, tokens = {}, {}
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        quiet_logging()  # alembic's env may reconfigure logging
        street = people.add_grid_node("S", "测试街道", "street")
        community = people.add_grid_node("S-C1", "C1社区", "community", street)
        people.add_grid_node("S-C1-G1", "C1一网格", "grid", community)
        for username, (role, grid_code) in PEOPLE.items():
            user = people.create_user(username, username, None)
            people.grant_role(user, role, people.grid_by_code(grid_code))
            tokens[username] = people.issue_token(user, "bench")
            users[username] = user.id
        report = deploy_folder(PROCESS_FOLDER, runtime(), deployed_by="bench")
        if report.issues:
            raise RuntimeError(f"deploying {PROCESS_FOLDER} failed: {report.issues}")
        commit()
        counter = SqlCounter(db.engine)
        db.session.remove()
    return Bench(app, instance_dir, users, tokens, counter)


def close_app(bench: Bench) -> None:
    from app.db import db

    with bench.app.app_context():
        db.session.remove()
        db.engine.dispose()
    shutil.rmtree(bench.instance_dir, ignore_errors=True)


# --- (b), (c): the service layer -------------------------------------------------

def service_loop(bench: Bench, first_case: int, cases: int, result: Result | None, on_phase=None) -> None:
    """Drive ``cases`` cases through the services inside one app context.

    Each start, each lookup and each completion is its own transaction ending in
    app.db.commit(), as one request each would be. With ``result`` None nothing is
    recorded (warm-up, profiling)."""
    from sqlalchemy import select

    from app.cases import service as cases_service
    from app.db import commit, db
    from app.people.models import User
    from app.runtime import runtime
    from app.work import service as work
    from app.work.models import OPEN_STATES, WorkItem

    perf = time.perf_counter
    counter = bench.counter
    phase = on_phase or (lambda _name: None)
    with bench.app.app_context():
        rt = runtime()
        users = {name: db.session.get(User, uid) for name, uid in bench.users.items()}
        for i in range(first_case, first_case + cases):
            phase("start")
            before, t0 = counter.snapshot(), perf()
            case = cases_service.start_case(
                rt, process_id=PROCESS_ID, title="垃圾堆放", grid_code=GRID, data={}, actor=users["member"]
            )
            case_id = case.id
            commit()
            if result is not None:
                result.start_latencies.append(perf() - t0)
                record_sql(result, "start", counter, before)
            for spec_id, who, data in path_for(i):
                phase("lookup")
                before, t0 = counter.snapshot(), perf()
                item_id = db.session.scalar(
                    select(WorkItem.id).where(
                        WorkItem.case_id == case_id, WorkItem.spec_id == spec_id, WorkItem.state.in_(OPEN_STATES)
                    )
                )
                commit()  # the lookup is a read of its own, like a client's GET
                if item_id is None:
                    raise RuntimeError(f"case {case_id}: no open work item {spec_id!r}")
                if result is not None:
                    result.lookup_latencies.append(perf() - t0)
                    record_sql(result, "lookup", counter, before)
                phase("complete")
                before, t0 = counter.snapshot(), perf()
                work.complete(rt, item_id, users[who], data)
                commit()
                if result is not None:
                    result.completion_latencies.append(perf() - t0)
                    record_sql(result, "complete", counter, before)
            phase("check")
            status = db.session.scalar(select(cases_service.Case.status).where(cases_service.Case.id == case_id))
            commit()
            if status != "completed":
                raise RuntimeError(f"case {case_id} ended {status!r}, not completed")


def run_service(mode: str, label: str, bench: Bench, cases: int, warmup: int) -> Result:
    result = Result(mode, label)
    service_loop(bench, 0, warmup, None)
    t0 = time.perf_counter()
    service_loop(bench, warmup, cases, result)
    result.seconds = time.perf_counter() - t0
    result.cases = cases
    return result


# --- (d): HTTP via the test client -----------------------------------------------

def http_loop(bench: Bench, first_case: int, cases: int, result: Result | None) -> None:
    client = bench.app.test_client()
    auth = {name: {"Authorization": f"Bearer {token}"} for name, token in bench.tokens.items()}
    perf = time.perf_counter
    counter = bench.counter

    def check(response, status: int, what: str):
        if response.status_code != status:
            raise RuntimeError(f"{what}: HTTP {response.status_code} {response.get_data(as_text=True)[:500]}")
        return response.get_json()

    for i in range(first_case, first_case + cases):
        before, t0 = counter.snapshot(), perf()
        body = check(
            client.post("/api/cases", headers=auth["member"],
                        json={"process_id": PROCESS_ID, "title": "垃圾堆放", "grid": GRID, "data": {}}),
            201, "POST /api/cases",
        )
        if result is not None:
            result.start_latencies.append(perf() - t0)
            record_sql(result, "start", counter, before)
        reference = body["reference"]
        last = None
        for spec_id, who, data in path_for(i):
            before, t0 = counter.snapshot(), perf()
            page = check(client.get(f"/api/work-items?case={reference}", headers=auth[who]), 200, "GET /api/work-items")
            items = [item for item in page["items"] if item["task"] == spec_id]
            if len(items) != 1:
                raise RuntimeError(f"{reference}: expected one open {spec_id!r}, got {page['items']}")
            if result is not None:
                result.lookup_latencies.append(perf() - t0)
                record_sql(result, "lookup", counter, before)
            before, t0 = counter.snapshot(), perf()
            response = client.post(f"/api/work-items/{items[0]['id']}/complete", headers=auth[who], json={"data": data})
            if result is not None:
                result.completion_latencies.append(perf() - t0)
                record_sql(result, "complete", counter, before)
            last = check(response, 200, f"POST complete {spec_id}")
        if last["case"]["status"] != "completed":
            raise RuntimeError(f"{reference} ended {last['case']['status']!r}")


def run_http(bench: Bench, cases: int, warmup: int) -> Result:
    result = Result("d", "(d) HTTP test client, SQLite")
    http_loop(bench, 0, warmup, None)
    t0 = time.perf_counter()
    http_loop(bench, warmup, cases, result)
    result.seconds = time.perf_counter() - t0
    result.cases = cases
    return result


# --- PostgreSQL -------------------------------------------------------------------

def pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(statement)


def pg_server_version() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def pg_bench_url() -> str:
    pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{PG_BENCH_DB}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{PG_BENCH_DB}"


# --- profiling -------------------------------------------------------------------

GROUPS = [
    # (group, predicate on (filename, function name)), first match wins
    ("SQL driver + server wait (round-trips)",
     lambda f, n: "psycopg" in f or "psycopg" in n or "sqlite3" in n or "/sqlite3/" in f),
    ("SQLAlchemy (ORM/Core, Python side)", lambda f, n: "/sqlalchemy/" in f or "flask_sqlalchemy" in f),
    ("serialization (Spiff to_dict/from_dict + converters)",
     lambda f, n: "/SpiffWorkflow/" in f and "serializer" in f or f.endswith("workflows/serialization.py")),
    ("JSON encode/decode", lambda f, n: "/json/" in f or "_json" in n or n.startswith("<method 'dumps'")),
    ("copy / deepcopy (task data)", lambda f, n: f.endswith("/copy.py")),
    ("SpiffWorkflow engine (steps, tree, specs)", lambda f, n: "/SpiffWorkflow/" in f),
    ("script engine (RestrictedPython, workflows.scripting)",
     lambda f, n: "RestrictedPython" in f or f.endswith("workflows/scripting.py") or n in ("<built-in method builtins.compile>", "<built-in method builtins.eval>", "<built-in method builtins.exec>")),
    ("form validation (jsonschema, referencing)",
     lambda f, n: "/jsonschema" in f or "/referencing/" in f or "/rpds" in f or f.endswith("workflows/forms.py")),
    ("hashing (hashlib)", lambda f, n: "_hashlib" in n or "/hashlib.py" in f),
    ("uuid", lambda f, n: f.endswith("/uuid.py")),
    ("web (flask, werkzeug, marshmallow, smorest)",
     lambda f, n: any(k in f for k in ("/flask/", "/werkzeug/", "/marshmallow/", "/flask_smorest/", "/webargs/"))),
    ("app/ (services, models, views)", lambda f, n: f"{ROOT}/app/" in f),
    ("workflows/ facade (engine, clock, roles)", lambda f, n: f"{ROOT}/workflows/" in f),
    ("datetime / zoneinfo", lambda f, n: "datetime" in n or "zoneinfo" in f or "_strptime" in f),
    ("logging", lambda f, n: "/logging/" in f),
    ("other (stdlib, builtins, typing, dataclasses, ...)", lambda f, n: True),
]

KEY_FUNCTIONS = [
    # (label, filename suffix (or a folder ending in "/"), function name)
    ("work.service.complete (whole)", "app/work/service.py", "complete"),
    ("  _lock (item case_id + SELECT case FOR UPDATE + re-read item)", "app/work/service.py", "_lock"),
    ("  _require_actor / can_act (scope: user.roles, grid nodes)", "app/work/service.py", "_require_actor"),
    ("  cases.apply_completion", "app/cases/service.py", "apply_completion"),
    ("    load_run -> Engine.load (json.loads + from_dict)", "app/cases/service.py", "load_run"),
    ("    CaseRun.complete (checks, form, run, engine steps, outcome)", "workflows/engine.py", "complete"),
    ("      Engine._check_form (jsonschema)", "workflows/engine.py", "_check_form"),
    ("      BpmnWorkflow.do_engine_steps", "SpiffWorkflow/bpmn/workflow.py", "do_engine_steps"),
    ("      Engine._outcome", "workflows/engine.py", "_outcome"),
    ("    cases._apply (dump state, event, projection, one flush)", "app/cases/service.py", "_apply"),
    ("      Engine.dump (to_dict + json.dumps)", "workflows/engine.py", "dump"),
    ("      Engine.plain (registry.convert of case data)", "workflows/engine.py", "plain"),
    ("    history.append_event (JSON + sha256)", "app/cases/history.py", "append_event"),
    ("    cases._project (work items + timers)", "app/cases/service.py", "_project"),
    ("app.db.commit (flush + COMMIT)", "app/db.py", "commit"),
    ("  Session.flush", "sqlalchemy/orm/session.py", "flush"),
    ("cases.start_case (whole)", "app/cases/service.py", "start_case"),
    ("  Engine.start", "workflows/engine.py", "start"),
    ("  _next_reference (UPSERT + UPDATE RETURNING)", "app/cases/service.py", "_next_reference"),
    ("pool checkout (pool_pre_ping)", "sqlalchemy/pool/base.py", "_checkout"),
    ("  dialect.do_ping", "sqlalchemy/", "do_ping"),
    ("Cursor.execute (psycopg)", "psycopg/cursor.py", "execute"),
    ("json.dumps", "json/__init__.py", "dumps"),
    ("json.loads", "json/__init__.py", "loads"),
    ("Session.execute / scalar (ORM statements)", "sqlalchemy/orm/session.py", "_execute_internal"),
    ("selectin eager loads (ProcessVersion.files, User.roles)", "sqlalchemy/orm/strategies.py", "_load_for_path"),
    ("refresh of expired objects after commit", "sqlalchemy/orm/loading.py", "_load_scalar_attributes"),
    ("autoflush (Session._autoflush)", "sqlalchemy/orm/session.py", "_autoflush"),
]


class WallTimers:
    """Low-overhead inclusive wall-clock timers wrapped around named callables, kept
    per phase of the loop (start / lookup / complete). cProfile inflates
    SQLAlchemy's many small calls; this does not."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.total: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._undo: list = []

    def set_phase(self, name: str) -> None:
        self.phase = name

    def add(self, label: str, seconds: float) -> None:
        self.total[self.phase, label] += seconds
        self.calls[self.phase, label] += 1

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        perf, add = time.perf_counter, self.add

        def timed(*args, **kwargs):
            t0 = perf()
            try:
                return original(*args, **kwargs)
            finally:
                add(label, perf() - t0)

        own = name in vars(owner)
        setattr(owner, name, timed)
        self._undo.append((owner, name, original, own))

    def restore(self) -> None:
        for owner, name, original, own in reversed(self._undo):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._undo.clear()


BREAKDOWN = [
    # (label, "module" or "module:Class", attribute); printed in this order
    ("work.service.complete", "app.work.service", "complete"),
    ("  _lock: item case_id, case FOR UPDATE, item re-read", "app.work.service", "_lock"),
    ("  _require_actor (user scope)", "app.work.service", "_require_actor"),
    ("  cases.apply_completion", "app.cases.service", "apply_completion"),
    ("    load_run (Engine.load: json.loads + from_dict)", "app.cases.service", "load_run"),
    ("    CaseRun.complete", "workflows.engine:CaseRun", "complete"),
    ("      Engine._check_form (jsonschema)", "workflows.engine:Engine", "_check_form"),
    ("      BpmnWorkflow.do_engine_steps", "SpiffWorkflow.bpmn.workflow:BpmnWorkflow", "do_engine_steps"),
    ("      Engine._outcome", "workflows.engine:Engine", "_outcome"),
    ("    cases._apply (state, event, projection, one flush)", "app.cases.service", "_apply"),
    ("      Engine.dump (to_dict + json.dumps)", "workflows.engine:Engine", "dump"),
    ("      append_event (JSON + sha256)", "app.cases.service", "append_event"),
    ("      cases._project (work items + timers)", "app.cases.service", "_project"),
    ("cases.start_case", "app.cases.service", "start_case"),
    ("  Engine.start", "workflows.engine:Engine", "start"),
    ("  _next_reference (one UPSERT … RETURNING)", "app.cases.service", "_next_reference"),
    ("app.db.commit (final flush + COMMIT)", "app.db", "commit"),
    ("Session.flush (every flush: auto + final)", "sqlalchemy.orm:Session", "flush"),
]
SQL_LABEL = "cursor.execute: every statement (driver + server)"
PING_LABEL = "pool_pre_ping: dialect.do_ping at checkout"
COMMIT_LABEL = "dialect.do_commit: the COMMIT round-trip"


def _resolve(path: str):
    import importlib

    module, _, cls = path.partition(":")
    owner = importlib.import_module(module)
    return getattr(owner, cls) if cls else owner


def breakdown_service(bench: Bench, first_case: int, cases: int, title: str) -> None:
    from sqlalchemy import event

    from app.db import db

    timers = WallTimers()
    for label, path, name in BREAKDOWN:
        timers.wrap(_resolve(path), name, label)
    t_sql = [0.0]

    def before(*_args, **_kwargs):
        t_sql[0] = time.perf_counter()

    def after(*_args, **_kwargs):
        timers.add(SQL_LABEL, time.perf_counter() - t_sql[0])

    with bench.app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    timers.wrap(engine.dialect, "do_ping", PING_LABEL)
    timers.wrap(engine.dialect, "do_commit", COMMIT_LABEL)
    t0 = time.perf_counter()
    try:
        service_loop(bench, first_case, cases, None, on_phase=timers.set_phase)
    finally:
        wall = time.perf_counter() - t0
        timers.restore()
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    counts = {"start": cases, "lookup": cases * 5, "complete": cases * 5}
    print(f"\nWall-clock breakdown of {title}, no profiler: {cases} cases, {1000 * wall / cases:.2f} ms/case.")
    print("Inclusive ms per operation (indented rows are part of the row above); n = calls per operation.")
    print(f"  {'step':<58} {'complete':>9} {'n':>5} {'start':>9} {'n':>5} {'lookup':>9} {'n':>5}")
    labels = [label for label, _p, _n in BREAKDOWN] + [SQL_LABEL, PING_LABEL, COMMIT_LABEL]
    for label in labels:
        cells = []
        for phase in ("complete", "start", "lookup"):
            calls = timers.calls.get((phase, label), 0)
            if calls:
                cells.append(f"{1000 * timers.total[phase, label] / counts[phase]:9.3f} {calls / counts[phase]:5.1f}")
            else:
                cells.append(f"{'-':>9} {'':>5}")
        print(f"  {label:<58} " + " ".join(cells))


def short(filename: str) -> str:
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    if "/lib/python" in filename:
        return filename.split("/lib/python", 1)[1].split("/", 1)[-1]
    return filename


def describe(key) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    return f"{short(filename)}:{line}({name})"


def profile_service(bench: Bench, first_case: int, cases: int) -> None:
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    service_loop(bench, first_case, cases, None)
    profiler.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    raw = stats.stats  # key -> (cc, nc, tt, ct, callers)
    total_tt = sum(v[2] for v in raw.values())
    completions = cases * 5
    print(f"\ncProfile of (c) PostgreSQL service layer: {cases} cases, {completions} completions, "
          f"{wall:.2f} s wall under the profiler (profiled total {total_tt:.2f} s)")

    grouped: dict[str, float] = defaultdict(float)
    for key, (_cc, _nc, tt, _ct, _callers) in raw.items():
        filename, _line, name = key
        for group, test in GROUPS:
            if test(filename, name):
                grouped[group] += tt
                break
    print("\nExclusive time (tottime) by group:")
    for group, tt in sorted(grouped.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<58} {tt:7.3f} s  {100 * tt / total_tt:5.1f}%  {1000 * tt / cases:7.2f} ms/case")

    print("\nInclusive time (cumtime) of key steps, per case (5 completions + 1 start + 5 lookups):")
    for label, suffix, name in KEY_FUNCTIONS:
        matches = [(k, v) for k, v in raw.items() if (k[0].endswith(suffix) or suffix.endswith("/") and suffix in k[0])
                   and k[2] == name]
        if not matches:
            continue
        calls = sum(v[1] for _k, v in matches)
        cum = sum(v[3] for _k, v in matches)
        print(f"  {label:<66} {1000 * cum / cases:8.2f} ms/case  {100 * cum / total_tt:5.1f}%  calls/case {calls / cases:6.1f}")

    def top(index: int, title: str, count: int = 25) -> None:
        print(f"\nTop {count} by {title}:")
        print(f"  {'calls':>9} {'tottime':>8} {'cumtime':>8}  function")
        for key, value in sorted(raw.items(), key=lambda kv: -kv[1][index])[:count]:
            print(f"  {value[1]:>9} {value[2]:8.3f} {value[3]:8.3f}  {describe(key)}")

    top(3, "cumulative time")
    top(2, "own time (tottime)")


# --- output ------------------------------------------------------------------------

def machine_info(pg_version: str | None) -> None:
    import sqlalchemy

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print("Machine")
    print(f"  CPUs: {os.cpu_count()}  {cpu}")
    print(f"  Python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}")
    print(f"  SpiffWorkflow {dist_version('spiffworkflow')}  SQLAlchemy {sqlalchemy.__version__}  "
          f"psycopg {dist_version('psycopg')}")
    print(f"  SQLite {sqlite3.sqlite_version}  PostgreSQL server {pg_version or 'n/a (skipped)'}")


def print_table(results: list[Result]) -> None:
    base = next((r for r in results if r.mode == "a" and not r.skipped), None)
    header = (f"{'mode':<36} {'cases':>6} {'cases/s':>9} {'x(a)':>6} {'compl/s':>9} {'x(a)':>6} "
              f"{'compl-only/s':>12} {'x(a)':>6} {'p50 ms':>8} {'p95 ms':>8} {'SQL/compl':>9}")
    print("\n" + header)
    print("-" * len(header))
    for r in results:
        if r.skipped:
            print(f"{r.label:<36} skipped: {r.skipped}")
            continue
        ratio = lambda v, b: f"{v / b:6.3f}" if base and b else "     -"
        print(
            f"{r.label:<36} {r.cases:>6} {r.cases_per_s:9.1f} {ratio(r.cases_per_s, base.cases_per_s)} "
            f"{r.completions_per_s:9.1f} {ratio(r.completions_per_s, base.completions_per_s)} "
            f"{r.completion_only_per_s:12.1f} {ratio(r.completion_only_per_s, base.completion_only_per_s)} "
            f"{ms(r.completion_latencies, 50):>8} {ms(r.completion_latencies, 95):>8} "
            f"{mean(r.sql.get('complete', [])):>9}"
        )
    print("\n  cases/s, compl/s: whole loop (start + lookups + completions, all commits) over wall time;")
    print("  compl-only/s: completions / time inside the timed completion calls; p50/p95: per completion")
    print("  ((a) engine calls; (b)(c) work.service.complete + commit, lookup excluded; (d) POST .../complete only).")
    details = [r for r in results if r.mode in "bcd" and not r.skipped]
    if details:
        print(f"\n{'mode':<36} {'start p50':>9} {'lookup p50':>10} {'SQL/start':>9} {'SQL/lookup':>10} "
              f"{'SQL/compl':>9} {'tx/compl':>8} {'checkouts/compl':>15}")
        for r in details:
            print(f"{r.label:<36} {ms(r.start_latencies, 50):>9} {ms(r.lookup_latencies, 50):>10} "
                  f"{mean(r.sql['start']):>9} {mean(r.sql['lookup']):>10} {mean(r.sql['complete']):>9} "
                  f"{mean(r.transactions['complete']):>8} {mean(r.checkouts['complete']):>15}")
        print("  SQL = statements seen by before_cursor_execute (SQLite counts its BEGIN IMMEDIATE; psycopg's implicit")
        print("  BEGIN, the COMMIT and pool_pre_ping's ping on each checkout are extra round-trips not counted here).")
        print("  tx = COMMITs; checkouts = transactions begun (in (d) the complete view reads again after its commit).")
    pg = next((r for r in results if r.mode == "c" and not r.skipped), None)
    if pg and base:
        ratio = pg.cases_per_s / base.cases_per_s
        verdict = "MET" if ratio >= TARGET_RATIO else "MISSED"
        print(f"\nTarget: (c) throughput >= {TARGET_RATIO} x (a): (c)/(a) = {ratio:.3f} -> {verdict} "
              f"(completion-only: {pg.completion_only_per_s / base.completion_only_per_s:.3f})")


# --- main ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300, help="measured cases for (b), (c), (d) (default 300)")
    parser.add_argument("--raw-cases", type=int, default=2000, help="measured cases for (a) (default 2000)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up cases per mode, not measured (default 5; (a) x4)")
    parser.add_argument("--skip-postgres", action="store_true", help="skip (c)")
    parser.add_argument("--modes", default="abcd",
                        help="modes to run, e.g. 'ac' (default abcd); add 'e' for the engine facade with a "
                             "save/load round trip per completion and no database (the ceiling of (b)-(d))")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="cProfile (c) when it misses the target (auto), always, or never")
    parser.add_argument("--profile-cases", type=int, default=100, help="cases to profile (default 100)")
    args = parser.parse_args(argv)
    quiet_logging()

    modes = set(args.modes)
    if args.skip_postgres:
        modes.discard("c")
    pg_version = None
    if "c" in modes:
        try:
            pg_version = pg_server_version()
        except Exception as exc:  # noqa: BLE001 - report and carry on without (c)
            print(f"!! PostgreSQL at {PG_ADMIN_URL} is not available ({exc}); (c) is skipped", file=sys.stderr)
            modes.discard("c")
            pg_version = None
    machine_info(pg_version)
    print(f"\nProcess {PROCESS_ID}: 5 user tasks per case, 'self' and 'dispatch' paths alternating; "
          f"warm-up {args.warmup} cases per mode ((a): {args.warmup * 4}).")

    results: list[Result] = []
    tmp = tempfile.mkdtemp(prefix="gridcase-bench-")
    pg_bench = None
    try:
        if "a" in modes:
            print(f"running (a) raw SpiffWorkflow, {args.raw_cases} cases ...", flush=True)
            results.append(run_raw(args.raw_cases, args.warmup * 4))
        if "e" in modes:
            print(f"running (e) engine facade with save/load, no DB, {args.raw_cases // 2} cases ...", flush=True)
            results.append(run_facade(args.raw_cases // 2, args.warmup * 4))
        if "b" in modes:
            print(f"running (b) service layer on SQLite, {args.cases} cases ...", flush=True)
            bench = make_app(f"sqlite:///{tmp}/bench-service.sqlite3")
            try:
                results.append(run_service("b", "(b) service layer, SQLite", bench, args.cases, args.warmup))
            finally:
                close_app(bench)
        if "c" in modes:
            print(f"running (c) service layer on PostgreSQL, {args.cases} cases ...", flush=True)
            pg_bench = make_app(pg_bench_url())
            results.append(run_service("c", "(c) service layer, PostgreSQL", pg_bench, args.cases, args.warmup))
        elif "c" in set(args.modes):
            results.append(Result("c", "(c) service layer, PostgreSQL", skipped="--skip-postgres or unavailable"))
        if "d" in modes:
            print(f"running (d) HTTP test client on SQLite, {args.cases} cases ...", flush=True)
            bench = make_app(f"sqlite:///{tmp}/bench-http.sqlite3")
            try:
                results.append(run_http(bench, args.cases, args.warmup))
            finally:
                close_app(bench)
        results.sort(key=lambda r: r.mode)
        print_table(results)
        if pg_bench is not None:
            base = next((r for r in results if r.mode == "a"), None)
            pg = next(r for r in results if r.mode == "c")
            missed = base is not None and pg.cases_per_s < TARGET_RATIO * base.cases_per_s
            if args.profile == "always" or (args.profile == "auto" and missed):
                first = args.warmup + args.cases
                breakdown_service(pg_bench, first, args.profile_cases, "(c) PostgreSQL service layer")
                profile_service(pg_bench, first + args.profile_cases, args.profile_cases)
    finally:
        if pg_bench is not None:
            close_app(pg_bench)
        if "c" in modes:
            pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
