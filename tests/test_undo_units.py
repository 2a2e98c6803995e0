"""The pure parts of the rollback: the tokenizer, the statement classifier, SHOW CREATE TABLE's differ."""

from __future__ import annotations

import pytest

from backend.dbops.sql import split_statements
from backend.dbops.undo import statements
from backend.dbops.undo.statements import classify
from backend.dbops.undo.tabledef import alter_statements, parse


def test_split_statements_knows_quotes_comments_and_routine_bodies():
    script = (
        "UPDATE knowledge SET tags = 'see #42'; DROP TABLE knowledge;\n"
        "SELECT '-- x'; ALTER TABLE t ADD c INT;\n"
        'UPDATE t SET a = "it\'s; ok" -- trailing; comment\n;\n'
        "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW BEGIN IF 1 THEN SET @a = 1; END IF; END;"
    )
    assert split_statements(script) == [
        "UPDATE knowledge SET tags = 'see #42'",
        "DROP TABLE knowledge",
        "SELECT '-- x'",
        "ALTER TABLE t ADD c INT",
        'UPDATE t SET a = "it\'s; ok" -- trailing; comment',
        "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW BEGIN IF 1 THEN SET @a = 1; END IF; END",
    ]


@pytest.mark.parametrize(
    "sql, kind, table",
    [
        ("UPDATE knowledge SET tags = 'x' WHERE id > 3 ORDER BY id LIMIT 5", statements.ROWS, "knowledge"),
        (
            "UPDATE chat_messages m JOIN users u ON u.id = m.user_id SET m.content = u.username",
            statements.ROWS,
            "chat_messages",
        ),
        ("DELETE FROM system_logs WHERE created_at < '2020-01-01'", statements.ROWS, "system_logs"),
        ("INSERT IGNORE INTO knowledge SELECT * FROM k2", statements.ROWS, "knowledge"),
        ("ALTER TABLE `chat messages` DROP COLUMN emotion", statements.ALTER, "chat messages"),
        ("CREATE UNIQUE INDEX ix ON users (email)", statements.ALTER, "users"),
        ("DROP INDEX ix ON users", statements.ALTER, "users"),
        ("CREATE TABLE IF NOT EXISTS mood_tags (id INT)", statements.CREATE_TABLE, "mood_tags"),
        ("SET SESSION sql_mode = ''", statements.NONE, None),
        ("SELECT COUNT(*) FROM users", statements.NONE, None),
    ],
)
def test_classify_reads_what_a_statement_touches(sql, kind, table):
    action = classify(sql)
    assert (action.kind, action.table) == (kind, table)


def test_classify_reads_an_alter_table_clause_by_clause():
    changes = classify(
        "ALTER TABLE t DROP emotion, MODIFY COLUMN content VARCHAR(10) NOT NULL, CHANGE role role2 "
        "VARCHAR(5), RENAME COLUMN a TO b, CONVERT TO CHARACTER SET latin1, ADD INDEX ix (x), "
        "DROP FOREIGN KEY fk, RENAME TO t2, ALGORITHM=INPLACE"
    ).alter
    assert changes.dropped == ("emotion",) and changes.modified == ("content",)
    assert changes.renamed == (("role", "role2"), ("a", "b")) and changes.retyped_renames == ("role",)
    assert changes.converts_charset and changes.new_name == "t2"
    assert classify("DROP TABLE IF EXISTS a, `b c`").tables == ("a", "b c")
    assert classify("RENAME TABLE a TO b, c TO d").renames == (("a", "b"), ("c", "d"))


@pytest.mark.parametrize(
    "sql, reason",
    [
        ("REPLACE INTO t VALUES (1)", "REPLACE deletes rows"),
        ("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 1", "ON DUPLICATE KEY UPDATE"),
        ("TRUNCATE TABLE t", "use DELETE FROM"),
        ("UPDATE a, b SET a.x = b.y, b.z = 1", "several tables"),
        ("DELETE s FROM system_logs s JOIN users u", "multi-table DELETE"),
        ("ALTER TABLE t DROP PARTITION p1", "loses data"),
        ("ALTER IGNORE TABLE t ADD UNIQUE (a)", "deletes rows"),
        ("CALL purge()", "not something a rollback can undo"),
        ("DROP DATABASE x", "cannot be undone"),
        ("UPDATE t SET a = 'unterminated", "cannot be read"),
    ],
)
def test_classify_refuses_what_it_cannot_undo_exactly(sql, reason):
    action = classify(sql)
    assert action.kind == statements.REFUSE and reason in action.reason, action


BEFORE = """CREATE TABLE `t` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `c` varchar(50) DEFAULT NULL COMMENT 'it''s',
  `d` int(11) NOT NULL DEFAULT 3,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uq` (`c`),
  KEY `ix_d` (`d`,`c`),
  CONSTRAINT `fk_u` FOREIGN KEY (`d`) REFERENCES `u` (`id`) ON DELETE CASCADE,
  CONSTRAINT `chk` CHECK (`d` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=9 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='tab''le'"""
AFTER = """CREATE TABLE `t` (
  `z` int(11) DEFAULT NULL,
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `d` bigint(20) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `ix_u` (`d`)
) ENGINE=InnoDB AUTO_INCREMENT=12 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci"""


def test_alter_statements_bring_a_table_back_to_its_before_image():
    before, after = parse(BEFORE), parse(AFTER)
    assert [name for name, _ in before.columns] == ["id", "c", "d"]
    assert before.options == {
        "ENGINE": "InnoDB",
        "CHARSET": "utf8mb4",
        "COLLATE": "utf8mb4_unicode_ci",
        "COMMENT": "'tab''le'",
    }  # AUTO_INCREMENT is not structure
    assert list(before.foreign_keys) == ["fk_u"] and list(before.checks) == ["chk"]
    assert alter_statements(after, before) == [
        "ALTER TABLE `t` DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='tab''le'",
        "ALTER TABLE `t` DROP INDEX `ix_u`, DROP COLUMN `z`, MODIFY COLUMN `id` int(11) NOT NULL AUTO_INCREMENT FIRST, "
        "ADD COLUMN `c` varchar(50) DEFAULT NULL COMMENT 'it''s' AFTER `id`, "
        "MODIFY COLUMN `d` int(11) NOT NULL DEFAULT 3 AFTER `c`, ADD UNIQUE KEY `uq` (`c`), ADD KEY `ix_d` (`d`,`c`)",
        "ALTER TABLE `t` ADD CONSTRAINT `fk_u` FOREIGN KEY (`d`) REFERENCES `u` (`id`) ON DELETE CASCADE, "
        "ADD CONSTRAINT `chk` CHECK (`d` > 0)",
    ]
    assert alter_statements(before, parse(BEFORE)) == []
    assert before.differences(after) and not before.differences(parse(BEFORE))
