from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def result(
    *,
    name: str,
    metric: str,
    value: float,
    unit: str,
    baseline: float | None,
    target: str,
    passed: bool,
    scale: float,
    **extra: Any,
) -> dict[str, Any]:
    ratio = round(value / baseline, 2) if baseline else None
    return {
        "name": name,
        "metric": metric,
        "value": round(value, 2),
        "unit": unit,
        "baseline": round(baseline, 2) if baseline is not None else None,
        "ratio": ratio,
        "target": target,
        "passed": passed,
        "scale": scale,
        "machine": machine(),
        **extra,
    }


def timings_ms(call: Callable[[], object], *, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], p: float) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]
