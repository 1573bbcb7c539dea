#!/usr/bin/env python
"""Queue latency with many cases: 100,000 cases and 300,000 work items on PostgreSQL.

    .venv/bin/python bench/queues.py [--cases N] [--requests R] [--warmup W] [--page-size S]
                                     [--users member,community,department[,supervisor,chief]]
                                     [--service open|all] [--explain USERS] [--try-index] [--keep]

Builds the app against a throwaway PostgreSQL database (gridcase_bench_queues, dropped
first WITH (FORCE) and again at the end unless --keep), migrates it, seeds a grid tree
(1 street -> 10 communities -> 30 grids each) with one grid member per grid, one
community_staff per community and street-level dispatcher / supervisor /
department_staff / duty_chief users, deploys bpmn/grid_quick, and then bulk-loads N
cases and 3 x N work items with INSERT ... SELECT generate_series (not through the
engine; the queues never read the serialized workflow, so each case carries a minimal
stand-in ``state``). VACUUM ANALYZE follows.

For each measured user -- by default a grid member (one grid), a community staff member
(one community) and the street department_staff -- it times, after a warm-up:
  API      GET /api/work-items?page=1&page_size=50 (bearer token, Flask test client),
           also with &overdue=true and with &state=claimed&assignee=me;
  service  app.work.service.list_work_items alone (default filter; --service all for the
           three; loading the user is not timed, the roles lookup inside the service is);
  page     the queue pages work.inbox / work.claimable when this build has them
           (signed in through the /login form with its CSRF token).
It prints p50/p95/max in ms, rows returned and totals, PASS/MISS against the target
(API p95 < 100 ms), and EXPLAIN (ANALYZE, BUFFERS) of the list and count queries for
the street user, plus the worst API filter of every user that misses the target.
The API rows also show the server side (EXPLAIN ANALYZE execution ms and shared buffers
of the count and list queries): buffers do not depend on the machine's load.
--try-index then adds the proposed index in the bench database and measures the API again.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT, Path(__file__).resolve().parent):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import engine_throughput as et  # noqa: E402  (bench/engine_throughput.py: shared helpers)

PROCESS_ID = "grid_quick"
PROCESS_FOLDER = ROOT / "bpmn" / PROCESS_ID
PG_ADMIN_URL = et.PG_ADMIN_URL
PG_BENCH_DB = "gridcase_bench_queues"
TARGET_P95_MS = 100.0
COMMUNITIES = 10
GRIDS_PER_COMMUNITY = 30
PASSWORD = "bench-queues-Passw0rd"
STREET_ROLES = ("dispatcher", "supervisor", "department_staff", "duty_chief")

# The three paths a seeded case follows (step index -> BPMN user task id). Case i takes
# path 0 when i is even, otherwise path 1, or path 2 (the department ran over and the
# supervisor took over) for a third of the odd cases. It has gone through steps 0..i % 5:
# every earlier step is completed (1 in 20 cancelled); the last one is open (ready, or
# claimed 2 times in 5) unless the case is closed (half of the cases at step 4).
PATHS = {
    0: ("register", "review", "community_handle", "reinspect", "close"),
    1: ("register", "review", "department_handle", "reinspect", "close"),
    2: ("register", "review", "supervise", "reinspect", "close"),
}
TITLES = ("垃圾堆放", "占道经营", "噪音扰民", "路灯损坏", "井盖缺失", "违章搭建")
CASE_DATA = ('{"category": "garbage", "description": "小区东门垃圾堆放三天未清运", '
             '"location": "3栋东侧", "verified": true, "decision": "self", "opinion": "社区自行处置"}')
STATE_PLACEHOLDER = '{"bench": "seeded by bench/queues.py; not a workflow"}'

# label -> (query string, WorkFilter keyword arguments)
VARIANTS = {
    "open": ("", {}),
    "overdue": ("&overdue=true", {"overdue": True}),
    "claimed/me": ("&state=claimed&assignee=me", {"state": "claimed", "assignee": "me"}),
}
PAGE_ENDPOINTS = ("work.inbox", "work.claimable")
# --try-index: an index the prefix match on grid_path can use (the default opclass cannot
# under a non-C collation such as C.UTF-8), for open items only.
PROPOSED_INDEX = ("CREATE INDEX ix_work_items_open_scope ON work_items "
                  "(role, grid_path varchar_pattern_ops) INCLUDE (due_at, created_at, id) "
                  "WHERE state IN ('ready', 'claimed')")


# --- results ---------------------------------------------------------------------

@dataclass
class Timing:
    who: str
    kind: str              # API / service / page
    variant: str
    latencies: list[float] = field(default_factory=list)
    rows: int | None = None
    total: int | None = None
    note: str = ""
    sql: list[tuple[str, float, int]] = field(default_factory=list)  # (count/list, server ms, shared buffers)

    def p(self, q: int) -> float:
        return et.pct(self.latencies, q) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def verdict(self) -> str:
        if self.kind != "API" or not self.latencies:
            return ""
        return "PASS" if self.p(95) < TARGET_P95_MS else "MISS"


@dataclass
class Person:
    key: str               # member / community / department / chief ...
    label: str
    username: str
    user_id: int
    token: str


@dataclass
class Bench:
    app: object
    instance_dir: str
    plain_url: str         # for psycopg
    people: dict[str, Person]
    grids: list[tuple[int, str, int, int]]  # (grid id, path, member user id, community staff user id)
    street_users: dict[str, int]            # role -> user id
    version_id: int


# --- database ----------------------------------------------------------------------

def bench_urls() -> tuple[str, str]:
    et.pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
    et.pg_admin(f'CREATE DATABASE "{PG_BENCH_DB}"')
    plain = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{PG_BENCH_DB}"
    return plain, plain.replace("postgresql://", "postgresql+psycopg://", 1)


def pg_settings(plain_url: str) -> str:
    import psycopg

    names = ("shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "jit", "max_parallel_workers_per_gather")
    with psycopg.connect(plain_url, autocommit=True) as conn:
        values = [f"{n}={conn.execute(f'SHOW {n}').fetchone()[0]}" for n in names]
        collate = conn.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()").fetchone()[0]
    return "  ".join(values) + f"  datcollate={collate}"


def make_app(sa_url: str, plain_url: str) -> Bench:
    instance_dir = tempfile.mkdtemp(prefix="gridcase-bench-queues-")
    os.environ["GRIDCASE_INSTANCE_PATH"] = instance_dir
    from flask_migrate import upgrade

    from app import create_app
    from app.db import commit, db
    from app.people import service as people
    from app.processes import service as processes
    from app.runtime import runtime

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": sa_url, "SECRET_KEY": "bench-queues"})
    et.quiet_logging()
    with app.app_context():
        logging.disable(logging.INFO)  # alembic's env.py re-reads alembic.ini's logging levels
        try:
            upgrade(directory=str(ROOT / "migrations"))
        finally:
            logging.disable(logging.NOTSET)
        et.quiet_logging()
        password_hash = people._hasher.hash(PASSWORD)  # one argon2 hash shared by every bench user

        def user(username: str, name: str, role: str, node):
            u = people.create_user(username, name, None)
            u.password_hash = password_hash
            people.grant_role(u, role, node)
            return u

        street = people.add_grid_node("S", "测试街道", "street")
        street_users = {role: user(f"street-{role}", f"街道{role}", role, street) for role in STREET_ROLES}
        grids, first_member, first_staff = [], None, None
        for c in range(1, COMMUNITIES + 1):
            community = people.add_grid_node(f"S-C{c}", f"第{c}社区", "community", street)
            staff = user(f"cs-c{c}", f"第{c}社区工作人员", "community_staff", community)
            first_staff = first_staff or staff
            for g in range(1, GRIDS_PER_COMMUNITY + 1):
                node = people.add_grid_node(f"S-C{c}-G{g}", f"第{c}社区第{g}网格", "grid", community)
                member = user(f"gm-c{c}-g{g}", f"第{c}社区第{g}网格员", "grid_member", node)
                first_member = first_member or member
                grids.append((node, member, staff))
        db.session.flush()
        report = processes.deploy_folder(PROCESS_FOLDER, runtime(), deployed_by="bench")
        if report.issues:
            raise RuntimeError(f"deploying {PROCESS_FOLDER} failed: {report.issues}")
        chosen = {
            "member": (first_member, f"grid member ({first_member.roles[0].grid_node.code}, 1 grid)"),
            "community": (first_staff, f"community_staff ({first_staff.roles[0].grid_node.code}, 30 grids)"),
            "department": (street_users["department_staff"], "street department_staff (S, 300 grids)"),
            "supervisor": (street_users["supervisor"], "street supervisor (S, 300 grids)"),
            "chief": (street_users["duty_chief"], "street duty_chief (S, 300 grids)"),
        }
        persons = {
            key: Person(key, label, u.username, u.id, people.issue_token(u, "bench"))
            for key, (u, label) in chosen.items()
        }
        version_id = processes.get_version(PROCESS_ID).id
        grid_rows = [(node.id, node.path, member.id, staff.id) for node, member, staff in grids]
        street_ids = {role: u.id for role, u in street_users.items()}
        commit()
        db.session.remove()
    return Bench(app, instance_dir, plain_url, persons, grid_rows, street_ids, version_id)


def close_app(bench: Bench) -> None:
    from app.db import db

    with bench.app.app_context():
        db.session.remove()
        db.engine.dispose()
    shutil.rmtree(bench.instance_dir, ignore_errors=True)


def task_specs(bench: Bench) -> dict[str, dict]:
    """Name, lane, role, form and instructions of every user task of the deployed version."""
    from app.db import db
    from app.processes import service as processes
    from app.processes.models import ProcessVersion
    from app.runtime import runtime
    from workflows.definitions import FORM_PROPERTY

    with bench.app.app_context():
        rt = runtime()
        definition = processes.definition_of(db.session.get(ProcessVersion, bench.version_id), rt)
        specs = {}
        for spec in definition.spec.task_specs.values():
            if not getattr(spec, "manual", False):
                continue
            ext = getattr(spec, "extensions", {}) or {}
            specs[spec.bpmn_id] = {
                "name": spec.bpmn_name or spec.bpmn_id,
                "lane": spec.lane,
                "role": rt.roles.resolve(spec.lane),
                "form": ext.get("properties", {}).get(FORM_PROPERTY),
                "instructions": ext.get("instructionsForEndUser") or None,
            }
        db.session.remove()
    return specs


def seed(bench: Bench, cases: int) -> dict[str, float]:
    """Bulk-load cases and work items with INSERT ... SELECT over generate_series."""
    import psycopg
    from psycopg import sql

    from app.cases.service import REFERENCE_TIMEZONE
    from app.timeutil import utcnow
    from workflows.serialization import SERIALIZER_VERSION

    specs = task_specs(bench)
    missing = {s for path in PATHS.values() for s in path} - specs.keys()
    if missing:
        raise RuntimeError(f"{PROCESS_ID} has no user tasks {sorted(missing)}")
    prefix = f"SJ-{utcnow().astimezone(REFERENCE_TIMEZONE).year}"
    street = bench.street_users
    timings: dict[str, float] = {}
    perf = time.perf_counter
    with psycopg.connect(bench.plain_url) as conn:
        t0 = perf()
        conn.execute("CREATE TEMP TABLE bench_steps (path int, step int, spec_id text, name text, role text, "
                     "lane text, form text, instructions text, PRIMARY KEY (path, step))")
        conn.execute("CREATE TEMP TABLE bench_grids (idx int PRIMARY KEY, id int, path text, member_id int, staff_id int)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bench_steps VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(path, step, spec_id, specs[spec_id]["name"], specs[spec_id]["role"], specs[spec_id]["lane"],
                  specs[spec_id]["form"], specs[spec_id]["instructions"])
                 for path, steps in PATHS.items() for step, spec_id in enumerate(steps)],
            )
            cur.executemany("INSERT INTO bench_grids VALUES (%s, %s, %s, %s, %s)",
                            [(i, *row) for i, row in enumerate(bench.grids)])
        # One row per case: its path, last step e, whether it is closed, its grid and times.
        # h1..h5 are independent deterministic pseudo-random numbers (hashint8), so runs repeat.
        conn.execute(sql.SQL("""
            CREATE TEMP TABLE bench_plan AS
            WITH s AS (
                SELECT i,
                       hashint8(i::bigint * 8 + 1)::bigint & 2147483647 AS h1,
                       hashint8(i::bigint * 8 + 2)::bigint & 2147483647 AS h2,
                       hashint8(i::bigint * 8 + 3)::bigint & 2147483647 AS h3,
                       hashint8(i::bigint * 8 + 4)::bigint & 2147483647 AS h4,
                       hashint8(i::bigint * 8 + 5)::bigint & 2147483647 AS h5
                FROM generate_series(1, {cases}) AS i
            ), p AS (
                SELECT i, h1,
                       CASE WHEN mod(i, 2) = 0 THEN 0 WHEN mod(h1, 3) = 0 THEN 2 ELSE 1 END AS path,
                       mod(i, 5) AS e,
                       (mod(i, 5) = 4 AND mod(h2, 2) = 0) AS closed,
                       mod(h3, {grids}) AS grid_idx,
                       h4, make_interval(secs => 6 * 3600 + mod(h5, 42 * 3600)) AS gap   -- 6 h .. 2 d per step
                FROM s
            )
            , t AS (
                SELECT i, path, e, closed, grid_idx, gap, h1 AS h,
                       -- when the last step appeared: open cases in the last 4 days, closed ones 7..180 days ago
                       CASE WHEN closed THEN now() - make_interval(secs => 7 * 86400 + mod(h4, 173 * 86400))
                            ELSE now() - make_interval(secs => mod(h4, 4 * 86400)) END AS last_at
                FROM p
            )
            -- case ids (and references) in order of creation, as the application assigns them
            SELECT row_number() OVER (ORDER BY last_at - gap * e, i) AS id, t.* FROM t
        """).format(cases=sql.Literal(cases), grids=sql.Literal(len(bench.grids))))
        timings["plan"] = perf() - t0

        t0 = perf()
        conn.execute(sql.SQL("""
            INSERT INTO cases (id, reference, process_version_id, title, grid_node_id, status, end_event, data, state,
                               serializer_version, row_version, created_at, updated_at, closed_at,
                               last_event_seq, last_event_hash, created_by_id)
            SELECT p.id,
                   {prefix} || '-' || lpad(p.id::text, greatest(6, length(p.id::text)), '0'),
                   {version},
                   ({titles}::text[])[(1 + mod(p.h, {ntitles}))::int] || ' #' || p.id,
                   g.id,
                   CASE WHEN p.closed THEN 'completed' ELSE 'active' END,
                   CASE WHEN p.closed THEN 'end_closed' END,
                   {data}::json,
                   {state},
                   {serializer},
                   p.e + 2,
                   p.last_at - p.gap * p.e,
                   CASE WHEN p.closed THEN p.last_at + p.gap * 0.8 ELSE p.last_at END,
                   CASE WHEN p.closed THEN p.last_at + p.gap * 0.8 END,
                   0, repeat('0', 64),
                   g.member_id
            FROM bench_plan p JOIN bench_grids g ON g.idx = p.grid_idx
            ORDER BY p.id
        """).format(prefix=sql.Literal(prefix), version=sql.Literal(bench.version_id),
                    titles=sql.Literal(list(TITLES)), ntitles=sql.Literal(len(TITLES)),
                    data=sql.Literal(CASE_DATA), state=sql.Literal(STATE_PLACEHOLDER),
                    serializer=sql.Literal(SERIALIZER_VERSION)))
        conn.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT max(id) FROM cases))")
        conn.execute(
            "INSERT INTO reference_counters (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = GREATEST(reference_counters.value, EXCLUDED.value)",
            (prefix, cases),
        )
        timings["cases"] = perf() - t0

        t0 = perf()
        conn.execute(sql.SQL("""
            INSERT INTO work_items (case_id, task_id, spec_id, name, process_id, lane, role, form, instructions,
                                    grid_node_id, grid_path, state, assignee_id, created_at, claimed_at,
                                    due_at, warn_at, closed_at, completed_by_id)
            SELECT x.id, x.task_id, st.spec_id, st.name, {process}, st.lane, st.role, st.form, st.instructions,
                   g.id, g.path, x.state,
                   CASE WHEN x.state IN ('claimed', 'completed') THEN h.user_id END,
                   x.created_at,
                   CASE WHEN x.state IN ('claimed', 'completed') THEN x.created_at + interval '1 hour' END,
                   x.due_at,
                   x.due_at - interval '12 hours',
                   CASE WHEN x.state IN ('completed', 'cancelled') THEN x.created_at + x.gap * 0.8 END,
                   CASE WHEN x.state = 'completed' THEN h.user_id END
            FROM (
                SELECT p.id, p.path, p.grid_idx, p.gap, k.k,
                       md5(p.i || ':' || k.k)::uuid::text AS task_id,
                       p.last_at - p.gap * (p.e - k.k) AS created_at,
                       CASE WHEN k.k < p.e THEN CASE WHEN mod(hk.v, 20) = 0 THEN 'cancelled' ELSE 'completed' END
                            WHEN p.closed THEN 'completed'
                            WHEN mod(hk.v, 5) < 2 THEN 'claimed'
                            ELSE 'ready' END AS state,
                       -- 15 % without a deadline; else 1..5 days after the item appeared
                       CASE WHEN mod(hk.v / 20, 100) < 15 THEN NULL
                            ELSE p.last_at - p.gap * (p.e - k.k) + make_interval(hours => (24 + mod(hk.v / 2000, 97))::int)
                       END AS due_at
                FROM bench_plan p
                CROSS JOIN LATERAL generate_series(0, p.e) AS k(k)
                CROSS JOIN LATERAL (SELECT hashint8(p.i::bigint * 8 + 6 + k.k * 1000003)::bigint & 2147483647 AS v) AS hk
            ) AS x
            JOIN bench_steps st ON st.path = x.path AND st.step = x.k
            JOIN bench_grids g ON g.idx = x.grid_idx
            JOIN LATERAL (
                SELECT CASE st.role WHEN 'grid_member' THEN g.member_id
                                    WHEN 'community_staff' THEN g.staff_id
                                    WHEN 'department_staff' THEN {department}
                                    WHEN 'supervisor' THEN {supervisor}
                                    WHEN 'duty_chief' THEN {chief} END AS user_id
            ) AS h ON true
            ORDER BY x.created_at, x.id, x.k   -- ids in order of creation, as the application appends them
        """).format(process=sql.Literal(PROCESS_ID), department=sql.Literal(street["department_staff"]),
                    supervisor=sql.Literal(street["supervisor"]), chief=sql.Literal(street["duty_chief"])))
        timings["work_items"] = perf() - t0
        t0 = perf()
        conn.commit()
        timings["commit"] = perf() - t0
    t0 = perf()
    with psycopg.connect(bench.plain_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    timings["vacuum_analyze"] = perf() - t0
    return timings


def describe_data(bench: Bench) -> None:
    import psycopg

    with psycopg.connect(bench.plain_url, autocommit=True) as conn:
        q = conn.execute
        n_cases, n_active = q("SELECT count(*), count(*) FILTER (WHERE status = 'active') FROM cases").fetchone()
        n_items, n_open, n_overdue, n_nodue = q(
            "SELECT count(*), count(*) FILTER (WHERE state IN ('ready', 'claimed')), "
            "count(*) FILTER (WHERE state IN ('ready', 'claimed') AND due_at < now()), "
            "count(*) FILTER (WHERE state IN ('ready', 'claimed') AND due_at IS NULL) FROM work_items"
        ).fetchone()
        print(f"  cases {n_cases:,} ({n_active:,} active); work items {n_items:,}: {n_open:,} open "
              f"({100 * n_open / max(n_items, 1):.1f} %), {n_overdue:,} of them overdue, {n_nodue:,} without deadline")
        rows = q("SELECT role, state, count(*) FROM work_items GROUP BY role, state ORDER BY role, state").fetchall()
        by_role: dict[str, dict[str, int]] = {}
        for role, state, count in rows:
            by_role.setdefault(role, {})[state] = count
        states = ("ready", "claimed", "completed", "cancelled")
        print(f"  {'role':<18}" + "".join(f"{s:>11}" for s in states))
        for role, counts in by_role.items():
            print(f"  {role:<18}" + "".join(f"{counts.get(s, 0):>11,}" for s in states))
        sizes = q("SELECT pg_size_pretty(pg_total_relation_size('cases')), "
                  "pg_size_pretty(pg_total_relation_size('work_items')), "
                  "pg_size_pretty(pg_indexes_size('work_items'))").fetchone()
        print(f"  size: cases {sizes[0]}, work_items {sizes[1]} (indexes {sizes[2]})")


# --- measuring -----------------------------------------------------------------------

def measure_api(bench: Bench, person: Person, variant: str, size: int, warmup: int, requests: int) -> Timing:
    client = bench.app.test_client()
    headers = {"Authorization": f"Bearer {person.token}"}
    url = f"/api/work-items?page=1&page_size={size}{VARIANTS[variant][0]}"
    timing = Timing(person.label, "API", variant)
    perf = time.perf_counter
    for n in range(warmup + requests):
        t0 = perf()
        response = client.get(url, headers=headers)
        elapsed = perf() - t0
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} as {person.username}: HTTP {response.status_code} "
                               f"{response.get_data(as_text=True)[:300]}")
        if n >= warmup:
            timing.latencies.append(elapsed)
    body = response.get_json()
    timing.rows, timing.total = len(body["items"]), body["total"]
    return timing


def measure_service(bench: Bench, person: Person, variant: str, size: int, warmup: int, requests: int) -> Timing:
    from app.db import db
    from app.people.models import User
    from app.work import service as work

    filters = work.WorkFilter(**VARIANTS[variant][1])
    timing = Timing(person.label, "service", variant)
    perf = time.perf_counter
    with bench.app.app_context():
        for n in range(warmup + requests):
            user = db.session.get(User, person.user_id)  # not timed (the API's token lookup)
            t0 = perf()
            page = work.list_work_items(user, filters, page=1, page_size=size)
            elapsed = perf() - t0
            timing.rows, timing.total = len(page.items), page.total
            db.session.remove()  # end the read transaction, empty the identity map: like a new request
            if n >= warmup:
                timing.latencies.append(elapsed)
    return timing


def sign_in(bench: Bench, person: Person):
    client = bench.app.test_client()
    form = client.get("/login")
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form.get_data(as_text=True)) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', form.get_data(as_text=True))
    if match is None:
        raise RuntimeError("no csrf_token on /login")
    response = client.post("/login", data={"csrf_token": match.group(1), "username": person.username,
                                           "password": PASSWORD})
    if response.status_code not in (302, 303):
        raise RuntimeError(f"sign-in as {person.username}: HTTP {response.status_code}")
    return client


def measure_page(bench: Bench, person: Person, endpoint: str, warmup: int, requests: int) -> Timing:
    from flask import got_request_exception, url_for

    with bench.app.test_request_context():
        url = url_for(endpoint)
    client = sign_in(bench, person)
    timing = Timing(person.label, "page", endpoint)
    errors: list[str] = []

    def failed(_sender, exception, **_extra):
        errors.append(f"{type(exception).__name__}: {exception}")

    perf = time.perf_counter
    logger = logging.getLogger("app.errors")
    logger_disabled = logger.disabled
    logger.disabled = True  # a page still under construction would log a traceback per request
    got_request_exception.connect(failed, bench.app)
    try:
        for n in range(warmup + requests):
            t0 = perf()
            response = client.get(url)
            elapsed = perf() - t0
            if response.status_code != 200:
                timing.note = f"GET {url}: HTTP {response.status_code}" + (f" ({errors[-1][:120]})" if errors else "")
                timing.latencies.clear()
                return timing
            if n >= warmup:
                timing.latencies.append(elapsed)
    finally:
        got_request_exception.disconnect(failed, bench.app)
        logger.disabled = logger_disabled
    timing.note = f"{len(response.data) / 1024:.0f} KiB HTML"
    return timing


# --- EXPLAIN -------------------------------------------------------------------------

def capture_statements(bench: Bench, person: Person, variant: str, size: int) -> list[tuple[str, object]]:
    from sqlalchemy import event

    from app.db import db
    from app.people.models import User
    from app.work import service as work

    seen: list[tuple[str, object]] = []

    def hook(_conn, _cursor, statement, parameters, _context, _executemany):
        seen.append((statement, parameters))

    with bench.app.app_context():
        user = db.session.get(User, person.user_id)
        user.roles  # noqa: B018 - load the roles before listening
        engine = db.engine
        event.listen(engine, "before_cursor_execute", hook)
        try:
            work.list_work_items(user, work.WorkFilter(**VARIANTS[variant][1]), page=1, page_size=size)
        finally:
            event.remove(engine, "before_cursor_execute", hook)
        db.session.remove()
    return [(s, p) for s, p in seen if "work_items" in s]


def explain(bench: Bench, person: Person, variant: str, size: int) -> None:
    import psycopg
    from psycopg import ClientCursor

    statements = capture_statements(bench, person, variant, size)
    with psycopg.connect(bench.plain_url, autocommit=True, cursor_factory=ClientCursor) as conn:
        for statement, params in statements:
            kind = "count" if statement.lstrip().upper().startswith("SELECT COUNT") else "list"
            cur = conn.cursor()
            literal = cur.mogrify(statement, params)
            print(f"\n--- EXPLAIN (ANALYZE, BUFFERS): {kind} query, {person.label}, filter '{variant}'")
            print(indent(literal))
            print("  plan:")
            for (line,) in cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall():
                print(f"    {line}")


def sql_cost(bench: Bench, person: Person, variant: str, size: int) -> list[tuple[str, float, int]]:
    """Server side of one request: execution time and shared buffers (hit + read) of the count
    and list queries, from EXPLAIN (ANALYZE, BUFFERS). Buffers do not depend on machine load."""
    import psycopg
    from psycopg import ClientCursor

    costs = []
    with psycopg.connect(bench.plain_url, autocommit=True, cursor_factory=ClientCursor) as conn:
        for statement, params in capture_statements(bench, person, variant, size):
            kind = "count" if statement.lstrip().upper().startswith("SELECT COUNT") else "list"
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params).fetchone()[0][0]
            top = plan["Plan"]
            costs.append((kind, plan["Execution Time"], top["Shared Hit Blocks"] + top["Shared Read Blocks"]))
    return costs


def create_proposed_index(bench: Bench) -> float:
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(bench.plain_url, autocommit=True) as conn:
        conn.execute(PROPOSED_INDEX)
        conn.execute("VACUUM (ANALYZE) work_items")
    return time.perf_counter() - t0


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines())


# --- output --------------------------------------------------------------------------

def print_table(timings: list[Timing], warmup: int, requests: int, size: int, title: str = "") -> None:
    print(f"\nLatency per request{title}, ms ({requests} timed after {warmup} warm-up; page_size={size}; "
          f"target: API p95 < {TARGET_P95_MS:.0f} ms)")
    header = (f"  {'user':<44} {'what':<8} {'filter':<16} {'p50':>8} {'p95':>8} {'max':>8} "
              f"{'rows':>5} {'total':>7}  {'target':<6} {'SQL count+list: server ms / buffers':<36}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    last = None
    for t in timings:
        who = t.who if t.who != last else ""
        last = t.who
        if not t.latencies:
            print(f"  {who:<44} {t.kind:<8} {t.variant:<16} {t.note}")
            continue
        rows = "" if t.rows is None else t.rows
        total = "" if t.total is None else t.total
        tail = t.verdict or t.note
        if t.sql:
            ms_sum = sum(c[1] for c in t.sql)
            tail = f"{tail:<6} " + " + ".join(f"{c[1]:.1f}" for c in t.sql) + f" = {ms_sum:.1f} ms / " + \
                " + ".join(f"{c[2]:,}" for c in t.sql)
        print(f"  {who:<44} {t.kind:<8} {t.variant:<16} {t.p(50):8.2f} {t.p(95):8.2f} {t.max_ms:8.2f} "
              f"{rows:>5} {total:>7}  {tail}")
    api = [t for t in timings if t.kind == "API" and t.latencies]
    misses = [t for t in api if t.verdict == "MISS"]
    worst = max(api, key=lambda t: t.p(95)) if api else None
    if worst is not None:
        print(f"\nTarget API p95 < {TARGET_P95_MS:.0f} ms: {len(api) - len(misses)}/{len(api)} PASS; worst p95 "
              f"{worst.p(95):.2f} ms ({worst.who}, '{worst.variant}') -> {'MET' if not misses else 'MISSED'}")


# --- main ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases to seed (default 100000); work items = 3 x cases")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per user and endpoint (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first (default 20)")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--users", default="member,community,department",
                        help="who to measure, comma-separated: member (1 grid), community (30 grids), and the "
                             "street-level department, supervisor, chief (duty_chief: the largest queue) "
                             "(default member,community,department)")
    parser.add_argument("--explain", default="department",
                        help="users whose list/count queries (default filter) get EXPLAIN ANALYZE (default "
                             "department); for every user that misses the target its worst API filter is explained too")
    parser.add_argument("--service", choices=("open", "all"), default="open",
                        help="filters for the service-only timing: the default queue only (default) or all three")
    parser.add_argument("--try-index", action="store_true",
                        help="afterwards create the proposed partial index on open items (role, grid_path "
                             "varchar_pattern_ops) in the bench database, measure the API again and explain the "
                             "worst filters again")
    parser.add_argument("--keep", action="store_true", help=f"keep the database {PG_BENCH_DB} at the end")
    args = parser.parse_args(argv)
    et.quiet_logging()
    keys = [k.strip() for k in args.users.split(",") if k.strip()]
    explain_keys = [k.strip() for k in args.explain.split(",") if k.strip()]

    pg_version = et.pg_server_version()
    et.machine_info(pg_version)
    plain_url, sa_url = bench_urls()
    print(f"  PostgreSQL settings: {pg_settings(plain_url)}")
    print(f"  load average (1/5/15 min): {load()}  -- other work on this machine slows every figure below")
    bench = None
    try:
        t0 = time.perf_counter()
        bench = make_app(sa_url, plain_url)
        unknown = [k for k in keys + explain_keys if k not in bench.people]
        if unknown:
            raise SystemExit(f"unknown user keys {unknown}; choose from {sorted(bench.people)}")
        print(f"\nSetup (migrate, {1 + COMMUNITIES + COMMUNITIES * GRIDS_PER_COMMUNITY} grid nodes, "
              f"{len(STREET_ROLES) + COMMUNITIES + COMMUNITIES * GRIDS_PER_COMMUNITY} users, deploy {PROCESS_ID}): "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"Seeding {args.cases:,} cases and {3 * args.cases:,} work items with INSERT ... SELECT generate_series ...",
              flush=True)
        t0 = time.perf_counter()
        seeded = seed(bench, args.cases)
        total = time.perf_counter() - t0
        print(f"  seeded in {total:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in seeded.items()))
        describe_data(bench)

        with bench.app.app_context():
            pages = [e for e in PAGE_ENDPOINTS if e in bench.app.view_functions]
        timings: list[Timing] = []
        for key in keys:
            person = bench.people[key]
            print(f"measuring {person.label} ({person.username}) ... load average {load()}", flush=True)
            for variant in VARIANTS:
                timing = measure_api(bench, person, variant, args.page_size, args.warmup, args.requests)
                timing.sql = sql_cost(bench, person, variant, args.page_size)
                timings.append(timing)
            for variant in (VARIANTS if args.service == "all" else ["open"]):
                timings.append(measure_service(bench, person, variant, args.page_size, args.warmup, args.requests))
            if pages:
                for endpoint in pages:
                    timings.append(measure_page(bench, person, endpoint, args.warmup, args.requests))
            else:
                timings.append(Timing(person.label, "page", "-", note="queue page: not available in this build"))
        print_table(timings, args.warmup, args.requests, args.page_size)
        print(f"load average after measuring: {load()}")
        if not pages:
            print("queue page: not available in this build (no work.inbox / work.claimable view)")

        explained = set()
        for key in explain_keys:
            explain(bench, bench.people[key], "open", args.page_size)
            explained.add((bench.people[key].label, "open"))
        # For every user with a miss, the API filter with the worst p95 (unless shown already).
        by_label = {p.label: p for p in bench.people.values()}
        worst: dict[str, Timing] = {}
        for t in timings:
            if t.verdict == "MISS" and (t.who not in worst or t.p(95) > worst[t.who].p(95)):
                worst[t.who] = t
        for who, t in worst.items():
            if (who, t.variant) not in explained:
                explain(bench, by_label[who], t.variant, args.page_size)
                explained.add((who, t.variant))

        if args.try_index:
            print(f"\n--try-index: {PROPOSED_INDEX}; VACUUM (ANALYZE) work_items: "
                  f"{create_proposed_index(bench):.1f} s", flush=True)
            again: list[Timing] = []
            for key in keys:
                person = bench.people[key]
                print(f"measuring {person.label} again ... load average {load()}", flush=True)
                for variant in VARIANTS:
                    timing = measure_api(bench, person, variant, args.page_size, args.warmup, args.requests)
                    timing.sql = sql_cost(bench, person, variant, args.page_size)
                    again.append(timing)
            print_table(again, args.warmup, args.requests, args.page_size, " with ix_work_items_open_scope")
            for who, variant in sorted(explained):
                explain(bench, by_label[who], variant, args.page_size)
    finally:
        if bench is not None:
            close_app(bench)
        if not args.keep:
            et.pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        else:
            print(f"kept database {PG_BENCH_DB}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
