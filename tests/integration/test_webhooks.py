"""Webhooks against real local HTTP servers: every case event is POSTed with an HMAC-SHA256
signature the receiver verifies; a failing endpoint is retried with backoff and finally
recorded as failed, with its status code and error in the delivery log."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.helpers import REGISTER, call, start_case, walk

SECRET = "s3cret-for-tests"


class Receiver:
    """A local HTTP server that records what it got and answers ``status``."""

    def __init__(self, status: int = 204):
        self.status = status
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8")
                receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"nope" if receiver.status >= 400 else b"")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def failing():
    r = Receiver(status=500)
    yield r
    r.close()


def add(app, url, *extra):
    result = app.test_cli_runner().invoke(args=["webhook", "add", url, "--secret", SECRET, *extra])
    assert result.exit_code == 0, result.output
    return int(result.output.split()[1])


def deliveries(app, endpoint_id=None):
    from app.db import db
    from app.webhooks import service

    with app.app_context():
        rows = [(d.case_reference, d.seq, d.event_kind, d.status, d.attempts, d.last_status_code, d.last_error)
                for d in service.deliveries(endpoint_id=endpoint_id)]
        db.session.remove()
        return rows


def wait_until(predicate, seconds=20.0):
    """The follow-up job runs in a background thread (no Redis in tests): wait for its result."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_events_are_posted_signed_and_without_personal_data(app, client, world, receiver):
    from app.webhooks.service import verify

    endpoint_id = add(app, receiver.url)
    reference = start_case(client, world, title="张三家门口垃圾")["reference"]
    walk(client, world, reference, [("register", "member", REGISTER)])
    assert wait_until(lambda: len(receiver.received) == 2), receiver.received

    bodies = sorted((json.loads(r["body"]) for r in receiver.received), key=lambda b: b["seq"])
    assert [b["kind"] for b in bodies] == ["case_started", "task_completed"]
    assert all(b["case"] == reference and b["process"] == "grid_quick" for b in bodies)
    assert bodies[1]["task"] == "register" and bodies[1]["task_name"] == "登记核实" and bodies[1]["role"] == "grid_member"
    events = call(client, world, "GET", f"/api/cases/{reference}/events").get_json()["items"]
    assert [b["hash"] for b in bodies] == [e["hash"] for e in events]
    for got in receiver.received:
        headers = got["headers"]
        assert verify(SECRET, headers["X-Gridcase-Timestamp"], got["body"], headers["X-Gridcase-Signature"])
        assert not verify("wrong", headers["X-Gridcase-Timestamp"], got["body"], headers["X-Gridcase-Signature"])
        assert not verify(SECRET, headers["X-Gridcase-Timestamp"], got["body"] + " ", headers["X-Gridcase-Signature"])
        assert headers["X-Gridcase-Event"] in ("case_started", "task_completed")
        # No personal data: not the title, not the form data, not the actor's name.
        assert "张三" not in got["body"] and "垃圾堆放三天" not in got["body"] and "\"member\"" not in got["body"]
    assert wait_until(lambda: all(d[3] == "delivered" for d in deliveries(app, endpoint_id)))
    assert {(d[3], d[4], d[5]) for d in deliveries(app, endpoint_id)} == {("delivered", 1, 204)}


def test_kind_filter_and_inactive_endpoints(app, client, world, receiver):
    wanted = add(app, receiver.url, "--kind", "task_completed")
    removed = add(app, receiver.url)
    result = app.test_cli_runner().invoke(args=["webhook", "remove", str(removed)])
    assert result.exit_code == 0, result.output
    listing = app.test_cli_runner().invoke(args=["webhook", "list"]).output
    assert f"{wanted}\tactive" in listing and f"{removed}\tinactive" in listing
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, [("register", "member", REGISTER)])
    assert wait_until(lambda: len(receiver.received) >= 1)
    time.sleep(0.3)  # give any wrong extra delivery the chance to arrive
    assert [json.loads(r["body"])["kind"] for r in receiver.received] == ["task_completed"]
    assert deliveries(app, removed) == []


def test_failing_endpoint_is_retried_then_recorded_as_failed(app, client, world, failing, monkeypatch):
    from app.db import db
    from app.webhooks.service import retry_due

    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 3)
    monkeypatch.setitem(app.config, "WEBHOOK_BACKOFF_SECONDS", [0, 0])
    endpoint_id = add(app, failing.url, "--kind", "case_started")
    start_case(client, world)
    assert wait_until(lambda: deliveries(app, endpoint_id) and deliveries(app, endpoint_id)[0][4] == 1)
    (first,) = deliveries(app, endpoint_id)
    assert first[3] == "pending" and first[5] == 500 and "HTTP 500" in first[6]

    with app.app_context():
        assert retry_due() == 1        # second attempt (what the periodic job does)
        assert retry_due() == 1        # third and last
        assert retry_due() == 0        # nothing left to try
        db.session.remove()
    (last,) = deliveries(app, endpoint_id)
    assert last[3:6] == ("failed", 3, 500)
    assert len(failing.received) == 3
    # Every attempt carries the same delivery id, so a receiver can de-duplicate.
    assert len({r["headers"]["X-Gridcase-Delivery"] for r in failing.received}) == 1
    log = app.test_cli_runner().invoke(args=["webhook", "deliveries"]).output
    assert "failed" in log and "attempts=3" in log


def test_unreachable_endpoint_records_the_error(app, client, world, monkeypatch):
    import socket

    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 1)
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint_id = add(app, f"http://127.0.0.1:{port}/hook", "--kind", "case_started")
    start_case(client, world)
    assert wait_until(lambda: deliveries(app, endpoint_id) and deliveries(app, endpoint_id)[0][3] == "failed")
    (row,) = deliveries(app, endpoint_id)
    assert row[4] == 1 and row[5] is None and "ConnectError" in row[6]


def test_bad_webhook_input_is_refused(app, world):
    runner = app.test_cli_runner()
    for args in (["webhook", "add", "ftp://example.org/x"], ["webhook", "add", "not a url"],
                 ["webhook", "add", "http://127.0.0.1/x", "--kind", "bad kind!"], ["webhook", "remove", "99999"]):
        result = runner.invoke(args=args)
        assert result.exit_code != 0 and "Error" in result.output, (args, result.output)
    assert deliveries(app) == []


def test_no_endpoint_means_no_delivery_and_no_job(app, client, world, monkeypatch):
    """A step with no webhook configured costs one statement and queues nothing."""
    import app.queue as queue

    queued = []
    monkeypatch.setattr(queue, "defer", lambda func, *args, **kwargs: queued.append(func))
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, [("register", "member", REGISTER)])
    assert queued == [] and deliveries(app) == []
