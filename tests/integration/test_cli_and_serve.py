"""The commands people run: validate, setup, serve — as subprocesses, like `make run` does."""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRIDCASE = [sys.executable, "-m", "flask", "--app", "app"]


def run(args, env, timeout=120):
    return subprocess.run(GRIDCASE + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def env(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment["GRIDCASE_INSTANCE_PATH"] = str(tmp_path / "instance")
    return environment


def test_validate_the_shipped_library(env):
    result = run(["process", "validate", "bpmn"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK grid_quick (网格事件快速处置): 7 user tasks" in result.stdout


def test_validate_reports_errors_with_file_and_line(env, tmp_path):
    broken = tmp_path / "lib" / "broken"
    broken.mkdir(parents=True)
    (broken / "bad.bpmn").write_text("<definitions>\n  <process id='x'>\n</definitions>\n", encoding="utf-8")
    result = run(["process", "validate", str(tmp_path / "lib")], env)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    assert "broken/bad.bpmn:3" in lines[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, auth: str | None = None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def test_setup_then_serve_the_demo(env, tmp_path):
    setup = run(["setup"], env, timeout=300)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "deployed grid_quick v1" in setup.stdout
    assert "wanggeyuan" in setup.stdout and "gridcase-demo" in setup.stdout

    again = run(["setup"], env, timeout=300)  # idempotent: nothing new to deploy or seed
    assert again.returncode == 0, again.stderr
    assert "not seeding" in again.stdout

    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(GRIDCASE + ["serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                status, _ = _get(base + "/api/openapi.json")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start: " + (tmp_path / "serve.log").read_text())
        assert status == 200
        status, body = _get(base + "/api/work-items", auth="wanggeyuan:gridcase-demo")
        assert status == 200
        items = json.loads(body)["items"]
        assert {item["task"] for item in items} >= {"register"}
        status, body = _get(base + "/api/docs")
        assert status == 200 and b"swagger-ui" in body
        status, _ = _get(base + "/static/vendor/swagger-ui/swagger-ui-bundle.js")
        assert status == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_bad_configuration_is_refused(env, monkeypatch):
    from app import create_app
    from app.config import ConfigError

    monkeypatch.setenv("GRIDCASE_INSTANCE_PATH", env["GRIDCASE_INSTANCE_PATH"])
    with pytest.raises(ConfigError, match="unsupported database"):
        create_app({"SQLALCHEMY_DATABASE_URI": "mysql://nope"})
    with pytest.raises(ConfigError, match="PAGE_SIZE_MAX"):
        create_app({"PAGE_SIZE_MAX": 0})
    app = create_app({})
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("gridcase.sqlite3")
