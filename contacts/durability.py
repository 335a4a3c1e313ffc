"""When a commit may skip waiting for the disk (``synchronous_commit = off``): the one policy.

PostgreSQL then acknowledges a commit before its WAL is flushed. A crash of PostgreSQL itself
(not of a worker, not of the web process) may forget the last fraction of a second of such
commits (at most ``3 × wal_writer_delay``, 0.6 s by default); the database stays consistent,
those transactions are simply gone as a whole. So it is allowed only for a transaction whose
loss is repaired or harmless:

- **redoable work**: the transaction only takes work off a queue that is still there if the
  commit is forgotten (the event pipeline's batch: its queue rows come back, the sweep hands
  the events on again, nothing is applied twice);
- **analytics whose last second may go**: page views drained from the beacon's queue (the
  queue is trimmed after the commit, so a forgotten commit loses those views: a visit's last
  second of reading, never a form, an API call or a click);
- **marks whose loss costs at worst a duplicate**: nurturing's hand-over and "sent" marks, one
  commit per message (a forgotten hand-over mark means the message may go again, with the same
  Message-ID, so a mail system can spot it); waiting for each flush would cost more than the
  SMTP exchange (figures in ``nurturing/sending.py``).

Never for recording what arrived from outside (events stored by the API, a form, a click): the
caller was told "stored".

Every use goes through ``commit_without_waiting`` and names its reason, so this list and the
call sites can be checked against each other (``grep commit_without_waiting``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def commit_without_waiting(reason: str) -> None:
    """Let the current transaction commit without waiting for its WAL flush (PostgreSQL; a no-op
    elsewhere and outside a transaction). ``reason`` says which case above applies, for the
    reader: it is not used."""
    del reason
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


@contextmanager
def commits_without_waiting(reason: str) -> Iterator[None]:
    """``commit_without_waiting`` for every commit made inside the block (a loop of one commit
    per item), set on the session and reset after."""
    del reason
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")
