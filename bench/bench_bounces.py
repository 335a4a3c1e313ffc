"""Bounces (``make bench BENCH=bounces``): the bounce mailbox half (``bench/bounces_mailbox.py``:
10,000 DSNs from a real IMAP server to recorded suppressions), with its baseline measured in the
same run. Results in ``bench/results/bounces.json``."""

from __future__ import annotations

from bench import bounces_mailbox


def run(scale: float) -> list[dict]:
    return [*bounces_mailbox.run(scale)]
