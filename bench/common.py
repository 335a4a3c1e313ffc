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


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    """CPU time (user + system) each of these processes has used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    return used


def process_tree(root: int) -> set[int]:
    """``root`` and its children (a Celery or gunicorn master and its pool)."""
    tree = {root}
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
            except OSError:
                continue
            if int(fields[1]) == root:
                tree.add(int(stat))
    return tree


def database_backends() -> set[int]:
    """The server processes of every session on the current database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend'"
        )
        return {pid for (pid,) in cursor.fetchall()}


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far, all cores together (/proc/stat)."""
    fields = [int(value) for value in open("/proc/stat").readline().split()[1:]]  # noqa: SIM115
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def bench_redis_url() -> str:
    """The Redis a benchmark's servers and workers use (BENCH_REDIS_URL, else REDIS_URL)."""
    return os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    )


def server_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a server or worker a benchmark starts: this process's database,
    ``redis_url`` as broker and queues, tasks sent to the broker, warnings only."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
