import os
from pathlib import Path

from celery import Celery, Task
from celery.signals import beat_init, task_postrun, task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadfunnel.settings")

app = Celery("leadfunnel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _create_filesystem_broker_folders(sender: Celery, **kwargs: object) -> None:
    # The embedded broker's folders must exist before a worker or producer touches them.
    # (Read from Django's settings: sender.conf is still being built while this runs.)
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_init.connect
@beat_init.connect
def _refuse_invalid_settings(sender: object, **kwargs: object) -> None:
    """Django runs no system checks in the worker or beat (Celery's fix-up runs them and
    ignores the result): invalid settings stop them here, with the checks' messages.
    (SystemExit: Celery logs and ignores any other exception a signal handler raises.)"""
    import sys

    import django
    from django.core.exceptions import ImproperlyConfigured

    django.setup()
    from leadfunnel.checks import refuse_to_start_on_errors

    try:
        refuse_to_start_on_errors("beat" if "beat" in type(sender).__module__ else "worker")
    except ImproperlyConfigured as error:
        print(error, file=sys.__stderr__, flush=True)  # Celery may have redirected sys.stderr
        raise SystemExit(1) from error


# Celery's Django fix-up closes the database connection before and after every task, so each
# task paid for a new PostgreSQL session (a server process, authentication, cold catalogue
# caches): more CPU than scoring a batch of a thousand events. Connections are kept instead
# (the fix-up, which reads this old-style key, still closes them every 500 tasks) and handled
# as Django handles them around each web request: closed once CONN_MAX_AGE has passed or when
# they no longer work (CONN_HEALTH_CHECKS).
app.conf["CELERY_DB_REUSE_MAX"] = 500


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(sender: Task | None = None, **kwargs: object) -> None:
    from django.db import close_old_connections, connection

    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # run inline by the caller, maybe inside its transaction
    if not connection.in_atomic_block:
        close_old_connections()
