"""Email opens and clicks made by mail scanners and link checkers, not by people.

Decided once, when the event is stored (``properties["machine"]``): scoring, rescoring and the
score explanation all read that flag, so they always agree, and no one rewrites the event later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SCANNER_USER_AGENT = re.compile(
    r"barracuda|mimecast|proofpoint|symantec|messagelabs|forcepoint|trend ?micro|"
    r"cisco.*(esa|ironport)|fireeye|sophos|zscaler|safelinks|urldefense|microsoft ?office.*"
    r"protection|bot|crawler|spider|curl|python-requests|go-http-client|headless",
    re.IGNORECASE,
)
# A person does not open a message, or click in it, this soon after it was delivered.
MACHINE_SECONDS_AFTER_SEND = 10
EMAIL_SIGNALS = frozenset({"email_open", "email_click"})


def is_machine_signal(properties: Mapping[str, Any]) -> bool:
    """A known scanner, or faster than a person can be."""
    if properties.get("machine") is True:
        return True
    user_agent = properties.get("user_agent")
    if isinstance(user_agent, str) and SCANNER_USER_AGENT.search(user_agent):
        return True
    seconds = properties.get("seconds_after_send")
    return (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and seconds < MACHINE_SECONDS_AFTER_SEND
    )


def flag_machine_signal(type: str, properties: Any) -> Any:  # noqa: A002
    """The properties to store: an open or click gets its ``machine`` flag if it has none."""
    if type in EMAIL_SIGNALS and isinstance(properties, dict) and "machine" not in properties:
        return {**properties, "machine": is_machine_signal(properties)}
    return properties
