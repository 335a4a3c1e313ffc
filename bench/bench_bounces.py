"""Bounces (``make bench BENCH=bounces``): ESP tracking webhooks under gunicorn
(``bench/bounces_esp.py``: events recorded/s for single-event and batched ESPs, with GET
/healthz and in-process recording as baselines measured in the same run). Results in
``bench/results/bounces.json``."""

from __future__ import annotations

from bench import bounces_esp


def run(scale: float) -> list[dict]:
    return [*bounces_esp.run(scale)]
