from typing import Any

from django.core.management.base import BaseCommand

from contacts.reports.rollups import rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recompute what the dashboard reads instead of the raw tables (daily event counts, "
        "stage stays) from the processed events and the stage history."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts, stays = rollups_rebuild()
        self.stdout.write(
            self.style.SUCCESS(f"Rebuilt {counts:,} daily event counts and {stays:,} stage stays.")
        )
