"""The online path on the session's server (`nox -s migrations` runs this once per server version):
an ALTER that copies chat_messages, run through pt-online-schema-change with our cut-over, leaves
the schema a direct run leaves and every row. Where the tool does not work with the server, the
test says so as its skip reason (shown in the session's summary)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.dbops import migrate
from backend.dbops.ddl_guard import OSC_TOOL
from backend.dbops.online_ddl import OnlineSchemaChangeFailed
from backend.dbops.servers import find_program
from tests.faults.live import all_rows
from tests.helpers import HEAD, REVISIONS, copy_versions, query, raw_schema, seed

RETYPE = "f6a7b8c9d0e1"  # tests/revisions/guard_copy: chat_messages.content TEXT -> VARCHAR(2000)


@pytest.mark.skipif(find_program(OSC_TOOL) is None, reason=f"{OSC_TOOL} is not installed (percona-toolkit)")
def test_an_online_alter_leaves_the_schema_and_rows_of_a_direct_one(created_database, mysql_server, tmp_path):
    versions = copy_versions(tmp_path / "versions")
    for path in (REVISIONS / "guard_copy").glob("*.py"):
        (versions / path.name).write_text(path.read_text() + "\n# ddl-guard: online\n")
    online = replace(created_database, versions_dir=versions, online_schema_change="online")
    direct = replace(online, online_schema_change="direct")
    database = created_database.database
    migrate.upgrade(online, HEAD)
    seed(mysql_server, database)
    query(
        mysql_server,
        "INSERT INTO emotion_analysis (message_id, session_id, user_id, emotion) VALUES (3, 's1', 1, 'calm')",
        database=database,
    )
    before = all_rows(mysql_server, database)
    lines: list[str] = []
    try:
        migrate.upgrade(online, RETYPE, say=lines.append)
    except OnlineSchemaChangeFailed as exc:
        server = f"{instance.flavour} {instance.version}" if (instance := mysql_server.instance) else "this server"
        pytest.skip(f"{OSC_TOOL} does not work with {server}: {exc}")
    assert any("swapped in" in line for line in lines), lines
    online_schema = raw_schema(mysql_server, database)
    assert all_rows(mysql_server, database) == before
    migrate.downgrade(direct, HEAD)
    migrate.upgrade(direct, RETYPE)
    assert raw_schema(mysql_server, database) == online_schema
