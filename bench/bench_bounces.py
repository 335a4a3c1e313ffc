"""Bounces (``make bench BENCH=bounces``): the bounce mailbox (``bench/bounces_mailbox.py``:
10,000 DSNs from a real IMAP server to recorded suppressions), then ESP tracking webhooks under
gunicorn (``bench/bounces_esp.py``: events recorded/s for single-event and batched ESPs), each
with its baseline measured in the same run. Results in ``bench/results/bounces.json``."""

from __future__ import annotations

from bench import bounces_esp, bounces_mailbox


def run(scale: float) -> list[dict]:
    return [*bounces_mailbox.run(scale), *bounces_esp.run(scale)]
