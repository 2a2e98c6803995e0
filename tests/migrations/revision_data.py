"""Rows to insert right after each revision on the way up (test_round_trip.py), keyed by revision id.

Each entry holds rows valid for the schema of its revision and, per table, the primary keys they
insert: released revisions never change, so neither do these. A new revision that adds tables or
columns worth keeping gets an entry here. Text carries Chinese and an emoji: utf8mb4 must survive
every step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RevisionRows:
    statements: tuple[str, ...]
    keys: dict[str, tuple]  # table -> primary key values the statements insert


SESSION_ID = "5f0c6a8e-1c1b-4d55-9d2e-6a7f3b2c9a01"

ROWS: dict[str, RevisionRows] = {
    "e9e7d98878ca": RevisionRows(
        statements=(
            "INSERT INTO users (id, username, email, password_hash, nickname, is_active) "
            "VALUES (901, 'matrix_user', 'matrix@example.test', 'pbkdf2$1$abc', '小明 😊', 1)",
            "INSERT INTO chat_sessions (id, user_id, title, status, message_count) "
            f"VALUES ('{SESSION_ID}', 901, '今天的心情', 'active', 2)",
            "INSERT INTO chat_messages (id, session_id, user_id, role, content, emotion, token_count) VALUES "
            f"(9001, '{SESSION_ID}', 901, 'user', '我今天有点焦虑 😟', 'anxious', 12), "
            f"(9002, '{SESSION_ID}', 901, 'assistant', '深呼吸，慢慢来。', NULL, 9)",
            "INSERT INTO emotion_analysis (id, message_id, session_id, user_id, emotion, intensity, sentiment_score, "
            f"keywords, suggestion) VALUES (9101, 9001, '{SESSION_ID}', 901, 'anxious', 0.750, -0.400, "
            "'[\"焦虑\", \"work\"]', '试试 4-7-8 呼吸法')",
            "INSERT INTO knowledge (id, category, title, content, tags, source, is_active) "
            "VALUES (9201, 'coping', '4-7-8 呼吸法', '吸气 4 秒，屏息 7 秒，呼气 8 秒。', 'breathing,anxiety', 'matrix', 1)",
            "INSERT INTO system_logs (id, level, module, message, user_id, details) "
            "VALUES (9301, 'WARNING', 'matrix', 'fixture row', 901, '{\"attempt\": 1, \"ok\": true}')",
            "INSERT INTO user_feedback (id, user_id, session_id, message_id, rating, feedback_type, comment) "
            f"VALUES (9401, 901, '{SESSION_ID}', 9002, 5, 'helpful', '很有帮助 👍')",
        ),
        keys={
            "users": (901,),
            "chat_sessions": (SESSION_ID,),
            "chat_messages": (9001, 9002),
            "emotion_analysis": (9101,),
            "knowledge": (9201,),
            "system_logs": (9301,),
            "user_feedback": (9401,),
        },
    ),
}
