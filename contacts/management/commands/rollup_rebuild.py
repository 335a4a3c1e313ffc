from typing import Any

from django.core.management.base import BaseCommand

from contacts.dashboard import event_rollup_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the daily event counts the dashboard reads from the processed events "
        "(after a restore, a bulk load, or to check them)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rows = event_rollup_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Daily event counts rebuilt: {rows:,} rows."))
