"""When a commit may skip waiting for the disk (``synchronous_commit = off``): the one policy.

PostgreSQL then acknowledges a commit before its WAL is flushed. A crash of PostgreSQL itself
(not of a worker, not of the web process) may forget the last fraction of a second of such
commits (at most ``3 × wal_writer_delay``, 0.6 s by default); the database stays consistent,
those transactions are simply gone as a whole. So it is allowed only for a transaction whose
loss is repaired or harmless:

- **redoable work**: the transaction only takes work off a queue that is still there if the
  commit is forgotten (the event pipeline's batch: its queue rows come back, the sweep hands
  the events on again, nothing is applied twice);
- **rebuildable data**: what it writes can be written again from a source that is kept
  (an import job that resumes from its checkpoint, page views drained from a queue that is only
  trimmed after the commit);
- **marks whose loss is safe by design** (nurturing's hand-over marks: a forgotten mark means a
  resend with the same Message-ID, which the in-doubt rule accepts).

Never for recording what arrived from outside (events stored by the API, a form, a click): the
caller was told "stored".

Every use goes through ``commit_without_waiting`` and names its reason, so this list and the
call sites can be checked against each other (``grep commit_without_waiting``).
"""

from __future__ import annotations

from django.db import connection


def commit_without_waiting(reason: str) -> None:
    """Let the current transaction commit without waiting for its WAL flush (PostgreSQL; a no-op
    elsewhere and outside a transaction). ``reason`` says which case above applies, for the
    reader: it is not used."""
    del reason
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
