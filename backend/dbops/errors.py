"""Errors whose message is a single line meant for the user, and folding any text to one line."""

from __future__ import annotations


def one_line(text: str | None) -> str:
    """Whitespace runs (newlines too) as one space: how a revision file keeps its message, and an
    error is shown on one line."""
    return " ".join((text or "").split())


def first_line(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__


class DbOpsError(Exception):
    """Base class: str(error) is one line, without secrets."""


class NotConfigured(DbOpsError):
    pass


class ServerUnreachable(DbOpsError):
    pass


class AccessDenied(DbOpsError):
    pass


class UnknownDatabase(DbOpsError):
    pass


class InvalidIdentifier(DbOpsError):
    pass


class RevisionError(DbOpsError):
    """Unknown or malformed revision, several heads, or another Alembic refusal."""


class Refused(DbOpsError):
    """A guard refused a destructive operation; nothing was changed."""


class ServerError(DbOpsError):
    """The server rejected a statement for another reason."""


class SandboxError(DbOpsError):
    pass


class ServiceError(DbOpsError):
    """The application service cannot start (e.g. its port is taken)."""


class RestartError(DbOpsError):
    """The restart command or the health check after it failed."""


class BackupError(DbOpsError):
    """A backup or restore failed, or a backup file did not pass verification."""


class UnknownTarget(DbOpsError):
    """A server target id not in the table of targets."""


class ProviderSkipped(DbOpsError):
    """This provider cannot serve the target; the message says why."""


class SchemaChanged(DbOpsError):
    """A table listed while reading the schema was gone when it was read."""


class ProvisionError(DbOpsError):
    """Building a Debian root for a target failed."""


class ServerUnavailable(DbOpsError):
    """No provider could serve the target; `reasons` holds (provider, reason) per provider tried."""

    def __init__(self, target_id: str, reasons: list[tuple[str, str]]) -> None:
        self.target_id = target_id
        self.reasons = list(reasons)
        super().__init__(f"no provider can serve {target_id}: " + "; ".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{provider}: {reason}" for provider, reason in self.reasons]
