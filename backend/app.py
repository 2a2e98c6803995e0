"""The emotional_chat backend service; for now it answers the health check over the database.

`python -m backend.app` (or `invoke app.run`) serves on APP_HOST:APP_PORT until SIGTERM or
Ctrl-C. GET /health answers 200 with the revision the database is at, its pid and the
APP_START_ID it was started with (app.restart checks it answers the one it gave), 503 when
the database cannot be reached; any other path 404. Settings come from backend.config as for
every task.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .config import ConfigError, Settings, load_settings
from .dbops import alembic_setup
from .dbops.errors import DbOpsError, ServiceError


class Service(ThreadingHTTPServer):
    # A slow request must not hold up the shutdown.
    daemon_threads = True

    def __init__(self, settings: Settings, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.settings = settings
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")

    def health(self) -> tuple[int, dict]:
        try:
            revisions = alembic_setup.current(self.settings)
        except DbOpsError as exc:
            return 503, {"status": "error", "error": str(exc)}
        except Exception as exc:  # the endpoint answers JSON whatever happens; the message may hold secrets
            return 503, {"status": "error", "error": f"unexpected {type(exc).__name__}"}
        return 200, {
            "status": "ok",
            "database": self.settings.database,
            "revision": ",".join(revisions) or "base",
            "pid": os.getpid(),
            "started_at": self.started_at,
            "start_id": self.settings.app_start_id,
        }


class Handler(BaseHTTPRequestHandler):
    server: Service

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/health":
            self._reply(*self.server.health())
        else:
            self._reply(404, {"status": "error", "error": "not found: the only path is /health"})

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        # One short line per request; requests carry no secrets and the replies are not logged.
        sys.stderr.write(f"{self.log_date_time_string()} {self.client_address[0]} {format % args}\n")


def serve(
    settings: Settings, host: str | None = None, port: int | None = None, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly; ready(url) is called once listening."""
    host = host or settings.app_host
    port = settings.app_port if port is None else port
    try:
        service = Service(settings, (host, port))
    except OSError as exc:
        why = (
            f"port {port} is already in use by another process"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        raise ServiceError(f"cannot listen on {host}:{port}: {why}") from None
    stop = threading.Event()
    # An inherited SIG_IGN stays: a service started in the background survives Ctrl-C in that terminal.
    signals = [number for number in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(number) is not signal.SIG_IGN]
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in signals}
    # serve_forever runs in a thread: shutdown() would deadlock if called from its own thread.
    worker = threading.Thread(target=service.serve_forever, name="http", daemon=True)
    worker.start()
    try:
        if ready is not None:
            ready(f"http://{host}:{service.server_address[1]}")
        stop.wait()
    finally:
        service.shutdown()
        service.server_close()
        for number, handler in previous.items():
            signal.signal(number, handler)


def main() -> int:
    try:
        serve(load_settings(), ready=lambda url: print(f"serving {url}/health", file=sys.stderr, flush=True))
    except (ConfigError, DbOpsError) as exc:
        print(f"backend.app: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
