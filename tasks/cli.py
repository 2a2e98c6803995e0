"""What every task shares: errors turned into one ❌ line and an exit code, check reports shown,
and the help of the options that guard destructive and protected operations."""

from __future__ import annotations

import functools

from invoke import Exit

from backend.config import ConfigError
from backend.console import debugging, say_lines
from backend.dbops.errors import DbOpsError, one_line

PROTECTED_HELP = {
    "yes": "Do not ask (on a protected environment it also needs --allow-production).",
    "allow_production": "Allow it on a protected (production) environment without a terminal; needs --yes.",
}
DESTRUCTIVE_HELP = {
    "yes": "Do not ask to type the database name (refused on production without --allow-production).",
    "allow_production": "Also allow it on a protected (production) environment; needs --yes.",
}


def cli_errors(body):
    """Show DbOpsError/ConfigError (and anything unexpected) as one ❌ line, exit 1."""

    @functools.wraps(body)
    def wrapper(c, *args, **kwargs):
        try:
            return body(c, *args, **kwargs)
        except Exit:
            raise
        except (DbOpsError, ConfigError) as exc:
            if debugging():
                raise
            raise Exit(f"❌ {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("❌ interrupted", code=130) from None
        except Exception as exc:
            if debugging():
                raise
            first = one_line(str(exc))[:300]
            raise Exit(
                f"❌ unexpected {type(exc).__name__}: {first} (DB_DEBUG=1 shows the traceback)", code=1
            ) from None

    return wrapper


def show_report(report) -> None:
    """Passed checks on stdout; failed ones as ❌ lines with exit code 1."""
    say_lines(report.passed_lines())
    if not report.ok:
        raise Exit(report.failure_text(), code=1)
