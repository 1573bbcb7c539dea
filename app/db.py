"""The SQLAlchemy handle and the unit of work.

One commit per request or job: views and jobs call :func:`commit`; services
only flush. Follow-up work (enqueueing jobs) registered with
:func:`after_commit` runs only once the commit has succeeded, so a job can
never see data that was rolled back.
"""
from __future__ import annotations

from typing import Callable

from flask import has_request_context, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Objects stay usable after commit: a request reads back what it just wrote without a
# second transaction. Writers never rely on that: lock_case re-reads under the lock.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})

_AFTER_COMMIT = "gridcase_after_commit"


def after_commit(callback: Callable[[], None]) -> None:
    """Run ``callback`` after the current transaction commits (dropped on rollback)."""
    db.session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def commit() -> None:
    session = db.session
    try:
        session.commit()
    except Exception:
        session.rollback()
        raise
    callbacks = session.info.pop(_AFTER_COMMIT, [])
    for callback in callbacks:
        callback()


def rollback() -> None:
    db.session.rollback()
    db.session.info.pop(_AFTER_COMMIT, None)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):  # pragma: no cover - driver hook
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    # Take transaction control away from pysqlite so that we can BEGIN IMMEDIATE (below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):  # pragma: no cover - driver hook
    # SQLite has one writer. Taking the write lock when the transaction starts makes
    # concurrent writers queue (busy_timeout) instead of failing on a stale snapshot;
    # combined with the case row version this gives one writer per case. Read-only
    # requests (GET/HEAD) begin normally: in WAL mode they never block or wait.
    if conn.dialect.name != "sqlite":
        return
    if has_request_context() and request.method in ("GET", "HEAD", "OPTIONS"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
