"""Shared fixtures.

Integration tests run once on SQLite and once on PostgreSQL (the ``app``
fixture is parametrised). A service that is missing fails the run under
CI=true; elsewhere the tests that need it are skipped with a loud reason.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get("GRIDCASE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# A Redis database picked by process id, so that concurrent local runs rarely share one
# (the jobs tests flush theirs).
REDIS_TEST_URL = os.environ.get("GRIDCASE_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{1 + os.getpid() % 15}")


def service_missing(what: str, reason: str):
    """Fail under CI, skip loudly elsewhere."""
    message = f"{what} is not available ({reason})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    # Not warnings.warn: the suite turns warnings into errors.
    sys.stderr.write(f"\n*** SKIPPING tests that need {message} (set CI=true to make this a failure) ***\n")
    pytest.skip(f"SKIPPED LOUDLY: {message}")


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def postgres_test_url() -> str:
    """Create a throwaway database for this test process and return its URL.

    The name carries the process id, so concurrent test runs on one server never
    drop each other's database; databases left by runs that died are dropped here."""
    import psycopg

    name = f"gridcase_test_{_worker_suffix()}_{os.getpid()}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            for (stale,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'gridcase_test_%'").fetchall():
                if not _owner_alive(stale):
                    conn.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", str(exc).strip().splitlines()[0])
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_postgres_test_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _owner_alive(database: str) -> bool:
    pid = database.rsplit("_", 1)[-1]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'gridcase-test.sqlite3'}"
        return
    url = postgres_test_url()
    yield url
    drop_postgres_test_database(url)


@pytest.fixture(scope="session")
def app(database_url, tmp_path_factory):
    from flask_migrate import upgrade

    from app import create_app

    instance = tmp_path_factory.mktemp("instance")
    os.environ["GRIDCASE_INSTANCE_PATH"] = str(instance)
    application = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "test",
        }
    )
    with application.app_context():
        upgrade(directory=str(ROOT / "migrations"))
    yield application
    with application.app_context():
        from app.db import db

        db.engine.dispose()


@pytest.fixture
def empty_db(app):
    """Every table truncated before the test. No app context stays pushed: requests
    made by the test client must each get their own (as in production)."""
    from app.db import db

    with app.app_context():
        _empty_all_tables(db)
        db.session.remove()


def _empty_all_tables(db) -> None:
    tables = [t for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in tables)
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    else:
        from tests.append_only import events_writable

        with db.engine.begin() as conn, events_writable(conn):
            for table in tables:
                conn.execute(table.delete())


@dataclass
class World:
    """The people and places a test works with; tokens are bearer tokens."""

    tokens: dict[str, str] = field(default_factory=dict)
    grids: dict[str, str] = field(default_factory=dict)

    def auth(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}


# username -> (role, grid code) ; grid None = the street
TEST_PEOPLE = {
    "member": ("grid_member", "S-C1-G1"),
    "member2": ("grid_member", "S-C2-G1"),  # another community: out of scope for C1 cases
    "community": ("community_staff", "S-C1"),
    "department": ("department_staff", "S"),
    "supervisor": ("supervisor", "S"),
    "chief": ("duty_chief", "S"),
    "chief2": ("duty_chief", "S"),
    "dispatcher": ("dispatcher", "S"),
    "district": ("district_department", "S"),
    "arealead": ("area_lead", "S"),
    "resident": ("resident", "S-C1-G1"),
    "secretary": ("secretary", "S-C1"),
    "branch": ("party_branch", "S-C1"),
    "committees": ("two_committees", "S-C1"),
}
# Who acts in each role in C1 (used to play scenario files through the API).
ROLE_USERS = {role: username for username, (role, grid) in TEST_PEOPLE.items() if username not in ("member2", "chief2")}


@pytest.fixture
def world(empty_db, app):
    """Street S with communities C1, C2 (one grid each), a user per role, and the process library deployed."""
    from app.db import commit
    from app.people import service as people
    from app.processes.service import deploy_folder
    from app.runtime import runtime

    with app.app_context():
        return _seed_world(app, people, deploy_folder, runtime, commit)


def _seed_world(app, people, deploy_folder, runtime, commit) -> World:
    w = World()
    street = people.add_grid_node("S", "测试街道", "street")
    w.grids["S"] = street.code
    for c in ("C1", "C2"):
        community = people.add_grid_node(f"S-{c}", f"{c}社区", "community", street)
        grid = people.add_grid_node(f"S-{c}-G1", f"{c}一网格", "grid", community)
        w.grids[community.code], w.grids[grid.code] = community.code, grid.code
    for username, (role, grid_code) in TEST_PEOPLE.items():
        user = people.create_user(username, username, None)
        people.grant_role(user, role, people.grid_by_code(grid_code))
        w.tokens[username] = people.issue_token(user, "test")
    admin = people.create_user("admin", "admin", None, is_admin=True)
    w.tokens["admin"] = people.issue_token(admin, "test")
    report = deploy_folder(app.config["PROCESS_LIBRARY"], runtime(), deployed_by="test")
    assert not report.issues, report.issues
    commit()
    return w


@pytest.fixture
def client(app, world):
    return app.test_client()
