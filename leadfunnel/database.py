"""PostgreSQL connections: timestamps parsed by the standard library's C parser.

Django registers its own loader for ``timestamptz`` on every psycopg 3 connection: a Python
subclass of psycopg's loader, which psycopg cannot replace by its C implementation, so every
timestamp the app reads is parsed by Python code (about 5 µs a value). In the scoring
benchmark's workers that was 5 to 9 % of the samples (py-spy, 6 December 2026: each batch
reads every event's time and every contact's last activity).

With ``USE_TZ`` and no per-database ``TIME_ZONE`` (this project's settings), Django sets the
session's time zone to UTC, and PostgreSQL writes timestamps in ISO form with ``+00``, which
``datetime.fromisoformat`` (C) reads into the same aware datetime in ``datetime.timezone.utc``
as Django's loader gives (0.3 µs). Anything it cannot read (infinity, years before 1 or after
9999) goes to Django's loader as before; other set-ups keep Django's loader untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def timestamps_fast(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the fast loader on UTC sessions."""
    if connection.vendor != "postgresql" or connection.timezone != UTC:
        return
    raw = connection.connection
    if raw.pgconn.parameter_status(b"TimeZone") != b"UTC":
        return
    raw.adapters.register_loader("timestamptz", _utc_loader())


_LOADER: type | None = None


def _utc_loader() -> type:
    global _LOADER
    if _LOADER is None:
        from django.db.backends.postgresql.psycopg_any import BaseTzLoader

        class UtcTimestamptzLoader(BaseTzLoader):
            # Django compares this with the connection's time zone on every cursor.
            timezone = UTC

            def load(self, data: Any) -> datetime:
                try:
                    return datetime.fromisoformat(bytes(data).decode())
                except ValueError:
                    return super().load(data)

        _LOADER = UtcTimestamptzLoader
    return _LOADER
