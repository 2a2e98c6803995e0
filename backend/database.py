"""SQLAlchemy 2.0 models of the emotional_chat application (seven tables).

The Alembic revisions under alembic/versions must produce exactly this schema:
`invoke db.revision` against a database at head finds nothing to add.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so revisions can drop what they created.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TABLE_ARGS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}

intpk = Annotated[int, mapped_column(BigInteger, primary_key=True, autoincrement=True)]
uuid_pk = Annotated[str, mapped_column(String(36), primary_key=True)]
created_at = Annotated[datetime, mapped_column(DateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP"))]
# The server keeps updated_at current, also for writes that bypass the ORM.
updated_at = Annotated[
    datetime,
    mapped_column(DateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP")),
]
user_fk = Annotated[int, mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)]

MESSAGE_ROLES = ("user", "assistant", "system")
SESSION_STATUSES = ("active", "archived", "closed")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FEEDBACK_TYPES = ("helpful", "not_helpful", "inappropriate", "other")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("username"),
        UniqueConstraint("email"),
        TABLE_ARGS,
    )

    id: Mapped[intpk]
    username: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    nickname: Mapped[str | None] = mapped_column(String(100))
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("1"))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]


class ChatSession(Base):
    __tablename__ = "chat_sessions"
    __table_args__ = (
        # A user's session list, newest first.
        Index(None, "user_id", "updated_at"),
        TABLE_ARGS,
    )

    id: Mapped[uuid_pk]
    user_id: Mapped[user_fk]
    title: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(
        Enum(*SESSION_STATUSES, name="chat_session_status"), server_default=text("'active'")
    )
    message_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        # A session's transcript in order.
        Index(None, "session_id", "created_at"),
        TABLE_ARGS,
    )

    id: Mapped[intpk]
    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    user_id: Mapped[user_fk]
    role: Mapped[str] = mapped_column(Enum(*MESSAGE_ROLES, name="chat_message_role"))
    content: Mapped[str] = mapped_column(Text)
    emotion: Mapped[str | None] = mapped_column(String(32))
    token_count: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[created_at]


class EmotionAnalysis(Base):
    __tablename__ = "emotion_analysis"
    __table_args__ = (
        UniqueConstraint("message_id"),
        # Mood over time for one user.
        Index(None, "user_id", "created_at"),
        Index(None, "emotion"),
        TABLE_ARGS,
    )

    id: Mapped[intpk]
    message_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("chat_messages.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    user_id: Mapped[user_fk]
    emotion: Mapped[str] = mapped_column(String(32))
    intensity: Mapped[Decimal] = mapped_column(Numeric(4, 3), server_default=text("0.000"))
    sentiment_score: Mapped[Decimal] = mapped_column(Numeric(4, 3), server_default=text("0.000"))
    keywords: Mapped[Any | None] = mapped_column(JSON)
    suggestion: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[created_at]


class Knowledge(Base):
    __tablename__ = "knowledge"
    __table_args__ = (
        UniqueConstraint("category", "title"),
        TABLE_ARGS,
    )

    id: Mapped[intpk]
    category: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    tags: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("1"))
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]


class SystemLog(Base):
    __tablename__ = "system_logs"
    __table_args__ = (
        Index(None, "level", "created_at"),
        Index(None, "created_at"),
        TABLE_ARGS,
    )

    id: Mapped[intpk]
    level: Mapped[str] = mapped_column(Enum(*LOG_LEVELS, name="system_log_level"), server_default=text("'INFO'"))
    module: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    details: Mapped[Any | None] = mapped_column(JSON)
    created_at: Mapped[created_at]


class UserFeedback(Base):
    __tablename__ = "user_feedback"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index(None, "user_id", "created_at"),
        TABLE_ARGS,
    )

    id: Mapped[intpk]
    user_id: Mapped[user_fk]
    session_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("chat_sessions.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("chat_messages.id", ondelete="SET NULL"))
    rating: Mapped[int] = mapped_column(SmallInteger)
    feedback_type: Mapped[str] = mapped_column(
        Enum(*FEEDBACK_TYPES, name="user_feedback_type"), server_default=text("'other'")
    )
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[created_at]
