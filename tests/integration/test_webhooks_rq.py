"""Webhook deliveries on real Redis: the follow-up job goes on the rq queue after commit
(nothing is sent in the web process) and a real `gridcase worker --burst` sends it, signed."""
from __future__ import annotations

import json

from tests.integration.helpers import start_case
from tests.integration.test_webhooks import SECRET, Receiver, add, deliveries
from tests.jobs.test_rq_timers import _worker, redis_conn  # noqa: F401 - fixture


def test_a_worker_sends_the_queued_delivery(app, client, world, redis_conn, monkeypatch, tmp_path):  # noqa: F811
    from app.webhooks.service import verify
    from tests.conftest import REDIS_TEST_URL

    receiver = Receiver()
    try:
        monkeypatch.setitem(app.config, "REDIS_URL", REDIS_TEST_URL)
        endpoint_id = add(app, receiver.url, "--kind", "case_started")
        reference = start_case(client, world)["reference"]
        (row,) = deliveries(app, endpoint_id)
        assert row[:5] == (reference, 1, "case_started", "pending", 0)   # queued, not sent here
        assert receiver.received == []

        result = _worker(app, tmp_path, "worker", "--burst")
        assert result.returncode == 0, result.stderr[-3000:]
        (row,) = deliveries(app, endpoint_id)
        assert row[3:6] == ("delivered", 1, 204)
        (got,) = receiver.received
        assert json.loads(got["body"])["case"] == reference
        assert verify(SECRET, got["headers"]["X-Gridcase-Timestamp"], got["body"], got["headers"]["X-Gridcase-Signature"])
    finally:
        receiver.close()
