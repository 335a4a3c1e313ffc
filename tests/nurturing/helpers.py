"""Building sequences for tests, and a real SMTP server (aiosmtpd) to deliver to."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiosmtpd.controller import Controller

from nurturing.models import Sequence, Step
from tests.utils import free_port


def sequence_with(*steps: dict[str, Any], **fields: Any) -> Sequence:
    """A sequence and its steps in order; ``yes``/``no`` name a target by its 1-based place."""
    defaults = {"name": f"Sequence {Sequence.objects.count() + 1}", "trigger": "manual"}
    sequence = Sequence.objects.create(**{**defaults, **fields})
    made = []
    for position, spec in enumerate(steps, start=1):
        spec = dict(spec)
        spec.pop("yes", None), spec.pop("no", None)
        step = Step(sequence=sequence, position=position, **spec)
        step.full_clean()
        step.save()
        made.append(step)
    for step, spec in zip(made, steps, strict=True):
        if "yes" in spec or "no" in spec:
            step.yes_step = made[spec["yes"] - 1] if spec.get("yes") else None
            step.no_step = made[spec["no"] - 1] if spec.get("no") else None
            step.save()
    return sequence


def email_step(subject: str = "Bonjour {{ first_name }}", body: str = "", **fields: Any) -> dict:
    return {
        "kind": "email",
        "subject": subject,
        "body_text": body or "Bonjour {{ first_name }}, voyez https://shop.example.fr/poêles\n",
        **fields,
    }


def wait_step(**delay: float) -> dict:
    return {"kind": "wait", "delay": timedelta(**delay)}


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class SmtpSink:
    """Accepts everything except the recipients in ``refuse`` (550)."""

    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 Message accepted for delivery"


def smtp_server(sink: SmtpSink, port: int | None = None) -> Controller:
    controller = Controller(sink, hostname="127.0.0.1", port=port or free_port())
    controller.start()
    return controller
