"""Run benchmarks on PostgreSQL: `python bench/run.py [name ...]` (make bench [BENCH=name]).

Each bench/bench_<name>.py has `run(scale) -> list[dict]`; results go to bench/results/<name>.json
and are printed. BENCH_SCALE (default 1) shrinks or grows the data. DATABASE_URL defaults to a
`leadfunnel_bench` database on the local PostgreSQL, created if missing and migrated.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/leadfunnel_bench")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-0123456789")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("READ_DOT_ENV", "false")
os.environ.setdefault("STATIC_MANIFEST", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadfunnel.settings")
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def main(names: list[str]) -> int:
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        print("Benchmarks run on PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    ensure_database(os.environ["DATABASE_URL"])
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    available = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py"))
    unknown = set(names) - set(available)
    if unknown:
        print(f"Unknown benchmark(s) {sorted(unknown)}; available: {available}", file=sys.stderr)
        return 2
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    failed = False
    for name in names or available:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"== {name} (scale {scale})", flush=True)
        results = module.run(scale)
        out = ROOT / "bench" / "results" / f"{name}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        for r in results:
            mark = "ok " if r["passed"] else "MISS"
            print(f"  [{mark}] {r['metric']}: {r['value']} {r['unit']} (baseline {r['baseline']}, "
                  f"ratio {r['ratio']}, target {r['target']})")  # fmt: skip
            failed |= not r["passed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
