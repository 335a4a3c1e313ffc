"""Webhooks (``make bench BENCH=webhooks``): the inbound half (``bench/webhooks_in.py``: posts/s
and p95 of signed form-tool deliveries under gunicorn) then the outbound half
(``bench/webhooks_out.py``: signed deliveries/s to a local receiver with two worker slots), each
with its own baseline measured in the same run. Results in ``bench/results/webhooks.json``."""

from __future__ import annotations

from bench import webhooks_in, webhooks_out


def run(scale: float) -> list[dict]:
    return [*webhooks_in.run(scale), *webhooks_out.run(scale)]
