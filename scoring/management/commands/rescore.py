from typing import Any

from django.core.management.base import BaseCommand

from scoring.models import Rescore
from scoring.rescore import rescore_run, rescore_start


class Command(BaseCommand):
    help = "Rescore every contact from the events table with the active rules, then move stages."

    def handle(self, *args: Any, **options: Any) -> None:
        run = rescore_start(reason="manage.py rescore")
        rescore_run(rescore_id=run.pk)  # here and now; the queued task will find it done
        run.refresh_from_db()
        if run.status != Rescore.Status.DONE:
            self.stderr.write(self.style.ERROR(f"Rescore failed: {run.error}"))
            raise SystemExit(1)
        self.stdout.write(
            self.style.SUCCESS(f"Rescored in {run.seconds:.1f} s: ")
            + f"{run.lines:,} ledger lines, {run.contacts_changed:,} scores changed, "
            f"{run.stage_moves:,} stage moves."
        )
