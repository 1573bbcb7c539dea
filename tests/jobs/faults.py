"""Tools for the fault tests: a Redis server of our own (so it can be killed, flushed and
restarted without touching the shared one), real ``gridcase worker`` processes, and the
checks that every due timer fired exactly once and no case or history was corrupted."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "jobs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class RedisServer:
    """A redis-server subprocess on a free port, without persistence: killing it loses
    everything it held, as a crashed or replaced Redis would."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        with open(self.directory / "redis.log", "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until(self.ping, 10, f"redis-server on port {self.port}", every=0.05)
        return self

    def ping(self) -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            with Redis.from_url(self.url, socket_connect_timeout=0.5) as connection:
                return bool(connection.ping())
        except RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def connection(self):
        from redis import Redis

        return Redis.from_url(self.url)


@dataclass
class Workers:
    """Real ``gridcase worker`` processes against the test database and our Redis.
    Each runs in its own session (process group), so kill -9 takes its work horse too."""

    database_url: str
    redis_url: str
    directory: Path
    sweep_seconds: int = 1
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self):
        self.instance = self.directory / "worker-instance"
        self.instance.mkdir(parents=True, exist_ok=True)
        (self.instance / "config.py").write_text(
            f"TIMER_SWEEP_SECONDS = {self.sweep_seconds}\nSECRET_KEY = 'worker-test'\n"
        )

    def start(self, name: str) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url,
                   GRIDCASE_INSTANCE_PATH=str(self.instance), PYTHONUNBUFFERED="1",
                   PYTHONFAULTHANDLER="1")
        with open(self.directory / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        process.log_path = self.directory / f"{name}.log"  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def log(self, process: subprocess.Popen) -> str:
        return process.log_path.read_text(errors="replace")  # type: ignore[attr-defined]

    def kill9(self, process: subprocess.Popen) -> None:
        """kill -9 the worker, its work horse (rq puts the horse in a session of its own,
        so the process group is not enough) and rq's scheduler process."""
        for pid in [process.pid, *descendants(process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(10)

    def terminate(self, process: subprocess.Popen, timeout: float = 30) -> int:
        process.send_signal(signal.SIGTERM)
        return self.wait(process, timeout)

    def wait(self, process: subprocess.Popen, timeout: float) -> int:
        """Wait for the worker to exit; if it hangs, have it dump its threads' stacks
        into its log (PYTHONFAULTHANDLER) before failing."""
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            time.sleep(1)
            raise AssertionError(f"worker {process.pid} did not exit:\n{self.log(process)[-6000:]}") from None

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill9(process)


def descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def registered_workers(redis_url: str) -> int:
    from redis import Redis
    from rq import Worker

    with Redis.from_url(redis_url) as connection:
        return len(Worker.all(connection=connection))


# -- what the database says ----------------------------------------------------------------
def reading(app):
    """A read-only context: on SQLite a GET request's transaction is a plain BEGIN (a WAL
    snapshot), so reading never waits for a worker that holds the write lock."""
    return app.test_request_context("/", method="GET")


def case_ids(app, references: list[str]) -> dict[str, int]:
    from app.cases.models import Case
    from app.db import db

    with reading(app):
        rows = dict(db.session.execute(select(Case.reference, Case.id).where(Case.reference.in_(references))).all())
        db.session.remove()
    return rows


def timers_by_state(app, references: list[str]) -> dict[str, int]:
    from app.cases.models import Case, Timer
    from app.db import db

    with reading(app):
        rows = db.session.execute(
            select(Timer.state, func.count()).join(Case, Case.id == Timer.case_id)
            .where(Case.reference.in_(references)).group_by(Timer.state)
        ).all()
        db.session.remove()
    return dict(rows)


def all_fired(app, references: list[str]) -> bool:
    states = timers_by_state(app, references)
    return states.get("fired", 0) == len(references) and not states.get("waiting")


def timer_fired_events(app, references: list[str]) -> int:
    from app.cases.models import Case, CaseEvent
    from app.db import db

    with reading(app):
        count = db.session.scalar(
            select(func.count()).select_from(CaseEvent).join(Case, Case.id == CaseEvent.case_id)
            .where(Case.reference.in_(references), CaseEvent.kind == "timer_fired")
        )
        db.session.remove()
    return count


def check_cases(app, references: list[str], *, escalated_task: str = "escalated") -> None:
    """Every case loads, its history chain is intact, each of its timers fired exactly once
    (one timer_fired event naming it), its row version matches its history, and its open
    work items and waiting timers are exactly what the workflow says."""
    from app.cases import service as cases
    from app.cases.history import GENESIS_HASH, canonical_content
    from app.cases.models import Case, CaseEvent, Timer
    from app.db import db
    from app.runtime import runtime
    from app.work.models import OPEN_STATES, WorkItem

    with app.app_context():
        for reference in references:
            case = db.session.scalar(select(Case).where(Case.reference == reference))
            events = list(db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)))
            assert [e.seq for e in events] == list(range(1, len(events) + 1)), (reference, [e.seq for e in events])
            previous = GENESIS_HASH
            for event in events:
                assert event.prev_hash == previous, (reference, event.seq, "chain broken")
                digest = hashlib.sha256(canonical_content(
                    reference=case.reference, seq=event.seq, kind=event.kind, at=event.at, actor=event.actor,
                    role=event.role, payload=event.payload, prev_hash=event.prev_hash,
                )).hexdigest()
                assert digest == event.hash, (reference, event.seq, "hash does not match the content")
                previous = event.hash
            assert (case.last_event_seq, case.last_event_hash) == (len(events), previous), reference
            # One engine step = one event = one row version.
            assert case.row_version == len(events), (reference, case.row_version, len(events))

            timers = list(db.session.scalars(select(Timer).where(Timer.case_id == case.id)))
            fired_mentions: dict[str, int] = {}
            for event in events:
                if event.kind == "timer_fired":
                    for timer in event.payload["timers"]:
                        fired_mentions[timer["task_id"]] = fired_mentions.get(timer["task_id"], 0) + 1
            for timer in timers:
                assert timer.state == "fired" and timer.fired_at is not None, (reference, timer.state)
                assert fired_mentions.get(timer.task_id) == 1, (reference, timer.task_id, fired_mentions)
            assert set(fired_mentions) == {t.task_id for t in timers}, reference

            locked = cases.lock_case(case.id)
            run = cases.load_run(locked, runtime())
            open_items = {
                item.task_id: item.spec_id
                for item in db.session.scalars(select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES)))
            }
            assert open_items == {t.task_id: t.spec_id for t in run.ready_tasks()}, reference
            assert sorted(open_items.values()) == [escalated_task], (reference, open_items)
            waiting = {t.task_id for t in db.session.scalars(select(Timer).where(Timer.case_id == case.id, Timer.state == "waiting"))}
            assert waiting == {t.task_id for t in run.waiting_timers()}, reference
            db.session.rollback()
        db.session.remove()
