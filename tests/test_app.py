"""The application service and its restart, with real processes against the real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from backend.config import PROJECT_ROOT
from backend.dbops.servers import free_port, pid_alive
from tests.command_line import assert_one_error_line
from tests.helpers import HEAD, app_pid, wait_until

# Generous deadlines: on a loaded machine Python alone may take seconds to start or to stop.
STOP_WAIT = 30


def _base_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['APP_PORT']}"


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _wait_for_health(base_url: str, timeout: float = 90) -> tuple[int, dict]:
    """The first answer of /health, once the service listens."""

    def answer() -> tuple[int, dict] | None:
        try:
            return _get(f"{base_url}/health")
        except urllib.error.URLError:
            return None

    return wait_until(answer, f"{base_url}/health to answer", timeout, interval=0.1)


@contextmanager
def _process(env: Mapping[str, str], module: str, *args: str):
    """python -m module args; an empty module runs the code in args[0] (python -c)."""
    command = [sys.executable, "-m", module, *args] if module else [sys.executable, "-c", *args]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _assert_secret_free(text: str | bytes, password: str) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    assert not password or password.encode() not in data


def test_service_reports_the_revision_and_stops_on_sigterm(created_database, app_env, invoke):
    base_url = _base_url(app_env)
    with _process(app_env, "backend.app") as process:
        status, body = _wait_for_health(base_url)
        assert status == 200, body
        assert body["status"] == "ok" and body["revision"] == "base" and body["pid"] == process.pid
        assert body["database"] == created_database.database and body["started_at"]

        assert invoke("db.init").returncode == 0
        assert _get(f"{base_url}/health") == (200, {**body, "revision": HEAD})
        assert _get(f"{base_url}/nope")[0] == 404

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_WAIT) == 0
        log = process.stderr.read()
    assert '"GET /health HTTP/1.1" 200' in log and '"GET /nope HTTP/1.1" 404' in log
    _assert_secret_free(log, created_database.password)


def test_service_answers_503_when_the_database_is_unreachable(settings, app_env):
    env = {**app_env, "MYSQL_PORT": str(free_port())}
    with _process(env, "backend.app") as process:
        status, body = _wait_for_health(_base_url(env))
        assert status == 503 and body["status"] == "error", body
        assert "cannot reach the MySQL server" in body["error"] and "\n" not in body["error"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_WAIT) == 0
    _assert_secret_free(json.dumps(body), settings.password)


def test_restart_starts_then_replaces_the_service_without_the_password(created_database, app_env, invoke):
    pid_file = Path(app_env["APP_PID_FILE"])
    pid_file.parent.mkdir()
    pid_file.write_text(str(os.getpid()))  # stale: a process that is not the app must survive
    first = invoke("app.restart", env=app_env)
    assert first.returncode == 0, first.output
    assert first.stdout.startswith("✅ restarted") and f"{_base_url(app_env)}/health healthy" in first.stdout
    assert "revision base" in first.stdout
    old = app_pid(pid_file)
    assert old and pid_alive(old)
    old_start = _get(f"{_base_url(app_env)}/health")[1]["start_id"]
    assert old_start

    # The service has the password from the config file only: not in its environment nor command line.
    environ = Path(f"/proc/{old}/environ").read_bytes()
    assert b"MYSQL_PASSWORD=" not in environ
    _assert_secret_free(environ + Path(f"/proc/{old}/cmdline").read_bytes(), created_database.password)

    second = invoke("app.restart", env=app_env)
    assert second.returncode == 0, second.output
    new = app_pid(pid_file)
    assert new and new != old and not pid_alive(old)
    status, body = _get(f"{_base_url(app_env)}/health")
    assert body["pid"] == new and body["start_id"] and body["start_id"] != old_start
    log = Path(app_env["APP_LOG_FILE"]).read_text()
    assert "GET /health" in log
    _assert_secret_free(first.output + second.output + log, created_database.password)


def test_restart_waits_for_the_expected_revision(created_database, app_env, invoke):
    assert invoke("db.init").returncode == 0
    ok = invoke("app.restart", "--expect-revision", HEAD, env=app_env)
    assert ok.returncode == 0, ok.output
    assert f"revision {HEAD}" in ok.stdout

    wrong = invoke("app.restart", "--expect-revision", "0123abcd4567", env={**app_env, "HEALTH_RETRIES": "2"})
    line = assert_one_error_line(wrong)
    assert "after 2 attempt(s)" in line and f"revision {HEAD} instead of 0123abcd4567" in line


def test_restart_and_health_commands(app_env, invoke):
    failing = {**app_env, "RESTART_COMMAND": "sh -c 'echo boom >&2; echo more >&2; exit 3'"}
    assert "RESTART_COMMAND sh failed with exit code 3: boom" in assert_one_error_line(
        invoke("app.restart", env=failing)
    )
    missing = {**app_env, "RESTART_COMMAND": "/nonexistent/restart"}
    assert "cannot run: No such file or directory" in assert_one_error_line(invoke("app.restart", env=missing))

    # Neither password variable reaches a command's environment.
    env = {
        **app_env,
        "RESTART_COMMAND": "true",
        "MYSQL_PWD": "secret",
        "HEALTH_COMMAND": "sh -c 'test -z \"${MYSQL_PASSWORD+x}${MYSQL_PWD+x}\"'",
    }
    ok = invoke("app.restart", env=env)
    assert ok.returncode == 0, ok.output
    assert "HEALTH_COMMAND healthy after 1 attempt(s)" in ok.stdout
    unhealthy = invoke("app.restart", env={**env, "HEALTH_COMMAND": "false"})
    assert "HEALTH_COMMAND false failed with exit code 1" in assert_one_error_line(unhealthy)


def test_restart_fails_cleanly_when_nothing_answers(app_env, invoke):
    url = f"http://127.0.0.1:{free_port()}/health"
    env = {**app_env, "RESTART_COMMAND": "true", "HEALTH_URL": url, "HEALTH_RETRIES": "2"}
    line = assert_one_error_line(invoke("app.restart", env=env))
    assert f"health check of {url} failed after 2 attempt(s)" in line and "refused" in line
    bad = invoke("app.restart", env={**env, "HEALTH_URL": "localhost:8000/health"})
    assert "'localhost:8000/health' is not an http(s) URL" in assert_one_error_line(bad)


# A stand-in for another service on the port: answers every GET with a /health-like body and its own pid.
OTHER_SERVICE = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps({**json.loads(sys.argv[2]), "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        print("request", flush=True)

server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", flush=True)
server.serve_forever()
"""


@contextmanager
def _other_service(port: str, body: dict):
    """Another process listening on port, answering body (and its pid) to every GET."""
    with _process(os.environ, "", OTHER_SERVICE, port, json.dumps(body)) as process:
        assert process.stdout.readline() == "listening\n", process.stderr.read()
        yield process


def test_restart_reports_at_once_that_another_process_holds_the_port(created_database, app_env, invoke):
    port = app_env["APP_PORT"]
    # What an older service would answer: healthy, at another revision.
    with _other_service(port, {"status": "ok", "revision": "0123abcd4567"}) as other:
        result = invoke("app.restart", "--expect-revision", "base", env={**app_env, "HEALTH_RETRIES": "30"})
        line = assert_one_error_line(result)
        other.kill()
        # Reported by the restart itself, from the started service's log: no health check ran.
        assert other.stdout.read() == ""
    assert "restart_services.sh failed with exit code 1" in line and "health check" not in line, line
    assert f"port {port} is already in use by another process" in line, line
    assert f"port {port} is already in use by another process" in Path(app_env["APP_LOG_FILE"]).read_text()


def test_the_health_check_knows_the_service_it_started(created_database, app_env, invoke):
    """A healthy answer, of the expected revision, from a process the restart did not start is refused."""
    port = app_env["APP_PORT"]
    env = {**app_env, "RESTART_COMMAND": "true", "HEALTH_RETRIES": "2"}
    body = {"status": "ok", "database": created_database.database, "revision": "base"}
    with _other_service(port, body) as other:
        line = assert_one_error_line(invoke("app.restart", "--expect-revision", "base", env=env))
    assert "after 2 attempt(s)" in line, line
    assert f"answered by another process (pid {other.pid}), not the one RESTART_COMMAND started" in line, line


def test_app_run_serves_in_the_foreground_until_sigterm(created_database, app_env):
    port = app_env["APP_PORT"]
    with _process({**app_env, "APP_PORT": "1"}, "invoke", "app.run", "--port", port) as process:
        status, body = _wait_for_health(_base_url(app_env))
        assert status == 200 and body["revision"] == "base", body
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_WAIT) == 0
        assert process.stdout.read().splitlines() == [f"✅ serving http://127.0.0.1:{port}/health (Ctrl-C stops)"]
