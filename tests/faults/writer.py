"""The application during a deploy: a process that keeps writing and logs every write it committed.

python -m tests.faults.writer LOG_FILE STOP_FILE, with the connection in MYSQL_* variables.
Round after round it inserts a chat message, updates the content of an existing one (seeded
rows 1-10, so that rows 11-40 keep what a deploy could destroy, and its own), inserts a system log, deletes one of its own system logs and
updates knowledge entry 2. A statement that fails (a table renamed away, a lock wait) is not
logged: only what the server committed is. Each committed write is one JSON line, flushed
before the next, with the insert's latency in milliseconds. It stops when STOP_FILE exists.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import pymysql

SEEDED_MESSAGES = range(1, 11)
SEEDED_KNOWLEDGE = (2,)  # knowledge 1 keeps what a deploy could destroy


def main(log_path: str, stop_path: str) -> None:
    connection = pymysql.connect(
        host=os.environ["MYSQL_HOST"],
        port=int(os.environ["MYSQL_PORT"]),
        user=os.environ["MYSQL_USER"],
        password=os.environ["MYSQL_PASSWORD"],
        database=os.environ["MYSQL_DATABASE"],
        autocommit=True,
        charset="utf8mb4",
    )
    chooser = random.Random(int(os.environ.get("WRITER_SEED", "7")))
    own_messages: list[int] = []
    own_logs: list[int] = []
    stop = Path(stop_path)
    with open(log_path, "a", buffering=1) as log, connection.cursor() as cursor:

        def committed(**entry) -> None:
            log.write(json.dumps(entry) + "\n")

        number = 0
        while not stop.exists():
            number += 1
            text = f"w{number}"
            operations = [
                (
                    "insert-message",
                    "INSERT INTO chat_messages (session_id, user_id, role, content) VALUES ('s1', 1, 'user', %s)",
                    (text,),
                ),
                (
                    "update-message",
                    "UPDATE chat_messages SET content = %s WHERE id = %s",
                    (f"u{number}", chooser.choice([*SEEDED_MESSAGES, *own_messages[-20:]])),
                ),
                ("insert-log", "INSERT INTO system_logs (module, message) VALUES ('writer', %s)", (text,)),
                (
                    "delete-log",
                    "DELETE FROM system_logs WHERE id = %s",
                    (own_logs.pop(0) if len(own_logs) > 3 else None,),
                ),
                (
                    "update-knowledge",
                    "UPDATE knowledge SET content = %s WHERE id = %s",
                    (f"k{number}", chooser.choice(SEEDED_KNOWLEDGE)),
                ),
            ]
            for kind, sql, args in operations:
                if args[-1] is None:
                    continue
                started = time.monotonic()
                try:
                    changed = cursor.execute(sql, args)
                except pymysql.err.MySQLError:
                    continue  # not committed: the application saw an error
                milliseconds = round((time.monotonic() - started) * 1000, 2)
                if kind.startswith("insert"):
                    row_id = cursor.lastrowid
                    (own_messages if kind == "insert-message" else own_logs).append(row_id)
                    committed(kind=kind, id=row_id, value=text, ms=milliseconds, at=time.time())
                elif changed:
                    committed(
                        kind=kind,
                        id=args[-1],
                        value=args[0] if kind != "delete-log" else None,
                        ms=milliseconds,
                        at=time.time(),
                    )
    connection.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
