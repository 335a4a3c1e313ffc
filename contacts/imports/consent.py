"""What an import may change of a known contact's consent and suppression.

The rule: **an opt-out is sticky.** An import sets do-not-email, do-not-call and a withdrawn
consent, but never lifts them: a "No" (or a blank) in a later file leaves an opted-out contact
opted out, whatever "overwrite" says. An opt-out recorded here (an unsubscribe link, a
complaint, a rep's note) is the person's word, and a CRM export made before it cannot know
about it; lifting one is a person's decision on the contact's page. A granted consent fills an
unknown one; the consent's date, legal basis and proof go with the status they prove.

Within one file, the rows of one person are merged the same way: one row saying "do not email"
is enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contacts.imports import parsing
from contacts.models import Contact

FLAGS = ("do_not_email", "do_not_call")
PROOF = ("consent_at", "consent_basis", "consent_method", "legitimate_interest_notice_on")
OPEN_TRACKING = ("open_tracking_consent_at", "open_tracking_consent_source")
WITHDRAWN = Contact.Consent.WITHDRAWN
GRANTED = Contact.Consent.GRANTED
UNKNOWN = Contact.Consent.UNKNOWN


def opt_outs_win(merged: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """After merging a person's rows (the first value of each field wins, or the last with
    "overwrite"): any opt-out on any row holds, and a source named on a row that no source
    matched still keeps the file's source away."""
    for name in FLAGS:
        if any(row.get(name) for row in rows):
            merged[name] = True
    if any(row.get("consent") == WITHDRAWN for row in rows):
        merged["consent"] = WITHDRAWN
    if "source_id" not in merged and any("source_id" in row for row in rows):
        merged["source_id"] = None


def consent_changes(
    contact: dict[str, Any], incoming: dict[str, Any], *, overwrite: bool
) -> dict[str, Any]:
    """The consent and suppression fields of ``contact`` (its values as the import reads them)
    that ``incoming`` changes, by the sticky opt-out rule above."""
    changes: dict[str, Any] = {}
    for name in FLAGS:
        if incoming.get(name) and not contact[name]:
            changes[name] = True
    status, current = incoming.get("consent"), contact["consent"]
    if status == WITHDRAWN and current != WITHDRAWN:
        changes["consent"] = WITHDRAWN
    elif status == GRANTED and current == UNKNOWN:
        changes["consent"] = GRANTED
    proof = {name: incoming[name] for name in PROOF if incoming.get(name)}
    if "consent" in changes:
        changes.update(proof)  # the new status's own proof
    elif status in (None, current):  # proof of the status the contact already has
        known = {name: contact[name] for name in proof}
        parsing.merge_fields(known, proof, overwrite=overwrite)
        changes.update({name: value for name, value in known.items() if value != contact[name]})
    changes.update(_open_tracking_changes(contact, incoming))
    return changes


def _open_tracking_changes(contact: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """A "no" withdraws the consent to open tracking; a "yes" gives it, keeping an earlier
    date (and its source) when the contact had given it already."""
    if "open_tracking_consent_at" not in incoming:
        return {}
    given, before = incoming["open_tracking_consent_at"], contact["open_tracking_consent_at"]
    if given is None:
        withdrawn = {"open_tracking_consent_at": None, "open_tracking_consent_source": ""}
        return withdrawn if before else {}
    if before is None:
        return {name: incoming[name] for name in OPEN_TRACKING}
    return {}
