from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from contacts.intake.capture import api_key_create


class Command(BaseCommand):
    help = "Make an API key for an integration and print it (once: only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who uses the key, e.g. 'Site web' or 'CRM sync'.")
        parser.add_argument(
            "--send-only",
            action="store_true",
            help="The key sends events and contacts but may not read contacts (a website).",
        )

    def handle(self, *args: Any, name: str, send_only: bool, **options: Any) -> None:
        key, plain = api_key_create(name=name, can_read=not send_only)
        scope = "send only" if send_only else "sends and reads contacts"
        self.stdout.write(self.style.SUCCESS(f"API key for {key.name} ({scope}): {plain}"))
        self.stdout.write("Send it as 'Authorization: Bearer <key>'. It will not be shown again.")
