"""Tests that must rewrite history (tampering, emptying the database) lift the database's
append-only guard on case_events first, as a database superuser would, and put it back."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy.engine import Connection

SQLITE_TRIGGERS = {
    operation: (
        f"CREATE TRIGGER case_events_no_{operation.lower()} BEFORE {operation} ON case_events "
        f"BEGIN SELECT RAISE(ABORT, 'case_events is append-only: {operation} refused'); END"
    )
    for operation in ("UPDATE", "DELETE")
}  # as migrations/versions/0007 creates them


@contextmanager
def events_writable(conn: Connection):
    """Inside: UPDATE/DELETE on case_events are allowed on this connection's transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE case_events DISABLE TRIGGER case_events_no_update_delete")
        yield
        conn.exec_driver_sql("ALTER TABLE case_events ENABLE TRIGGER case_events_no_update_delete")
    else:
        for operation in SQLITE_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS case_events_no_{operation.lower()}")
        yield
        for sql in SQLITE_TRIGGERS.values():
            conn.exec_driver_sql(sql)
