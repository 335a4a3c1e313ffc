"""Who may see which contacts and do what with them: the one decision every contact URL, list
and export reads (least privilege, issue 16).

- admin (staff): sees every contact; may do everything.
- marketer: sees every contact; may edit (fields, email status), erase, export one person's
  data, enrol in sequences; no sales act (claim, outcome, reassign).
- sales rep: sees the queue (unclaimed SQLs) and the contacts they own, any stage (their
  leads, the ones given to them, their clients); may claim, and record outcomes on their own.
- sales manager: what a rep sees, plus every contact owned by a rep of their team (a manager
  with no team: every contact any rep owns); may also reassign and release those.
- anyone else: nothing.

Pages, not contacts: the contact list, search and CSV export, imports and the dashboard are
marketers' (a rep never lists or exports every contact); the queue and "my leads" sales';
the team page (and the pipeline) managers'; rules, sequences' settings and API keys admins'.
A user with both marketing and sales roles has both rows. A contact the user may not see is
answered 404, as for an id that does not exist; a visible contact the user may not act on, 403.
API keys are integration credentials, not people (``ApiKey.can_read``, contacts/intake/api.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404

from contacts.roles import MARKETING, SALES, SALES_MANAGER, user_roles

# The models read this module (``Contact.objects.visible_to``): it names them through the app
# registry, not by importing them, so that no import cycle forms.


def _model(name: str) -> Any:
    return apps.get_model("contacts", name)


class Act(StrEnum):
    VIEW = "view"
    EDIT = "edit"  # fields, custom fields, email status
    ERASE = "erase"
    EXPORT = "export"  # one person's data as JSON
    ENROLL = "enroll"
    CLAIM = "claim"
    RECORD_OUTCOME = "record_outcome"
    REASSIGN = "reassign"  # and release
    LOG_ACTIVITY = "log_activity"  # a note, a call, a meeting, an email from the page


# Acts a marketer (and staff) may do on any contact they see.
MARKETING_ACTS = frozenset({Act.EDIT, Act.ERASE, Act.EXPORT, Act.ENROLL})


def manager_team_id(user: Any) -> int | None:
    """The manager's team (their SalesRep row), read once per request; None: no team."""
    if not hasattr(user, "_leadfunnel_team_id"):
        user._leadfunnel_team_id = (
            _model("SalesRep").objects.filter(pk=user.pk).values_list("team_id", flat=True).first()
        )
    return user._leadfunnel_team_id


def team_owned(user: Any) -> Q:
    """Contacts owned by a rep of ``user``'s team; with no team, by any rep (every owned
    contact): a manager without a team manages the whole sales floor."""
    team = manager_team_id(user)
    if team is None:
        return Q(owner__isnull=False)
    return Q(owner__sales_rep__team_id=team)


def visible(user: Any) -> Q:
    """The filter of the contacts ``user`` may open (``Contact.objects.visible_to``)."""
    roles = user_roles(user)
    if MARKETING in roles:  # staff too
        return Q()
    if SALES not in roles:
        return Q(pk__in=[])
    seen = Q(stage=_model("Contact").Stage.SQL, owner__isnull=True) | Q(owner=user)
    if SALES_MANAGER in roles:
        seen |= team_owned(user)
    return seen


def manages(user: Any, contact: Any) -> bool:
    """Whether ``user`` may reassign or release ``contact`` (owned by a rep of their team)."""
    roles = user_roles(user)
    if "admin" in roles:
        return True
    if SALES_MANAGER not in roles or contact.owner_id is None:
        return False
    team = manager_team_id(user)
    if team is None:
        return True
    return _model("SalesRep").objects.filter(pk=contact.owner_id, team_id=team).exists()


def may(user: Any, act: Act, contact: Any) -> bool:
    """Whether ``user`` may do ``act`` on ``contact``, a contact they see."""
    roles = user_roles(user)
    if "admin" in roles or act == Act.VIEW:
        return True
    if act in MARKETING_ACTS:
        return MARKETING in roles
    if act == Act.CLAIM:
        return SALES in roles
    if act == Act.RECORD_OUTCOME:
        return SALES in roles and contact.owner_id == user.pk
    if act == Act.REASSIGN:
        return manages(user, contact)
    if act == Act.LOG_ACTIVITY:
        # A claimed lead is its owner's to work (or their manager's); one nobody owns, the work
        # of whoever sees it (a marketer's note on a prospect, a rep's call to a queued SQL).
        return contact.owner_id in (None, user.pk) or manages(user, contact)
    return False


def contact_for(user: Any, pk: int, act: Act = Act.VIEW, contacts: Any = None) -> Any:
    """The contact ``pk`` for ``act``: 404 if ``user`` may not see it (the same answer as for
    an id that does not exist), 403 if they see it but may not do ``act``."""
    contacts = _model("Contact").objects.all() if contacts is None else contacts
    contact = contacts.filter(visible(user), pk=pk).first()
    if contact is None:
        raise Http404
    if not may(user, act, contact):
        raise PermissionDenied
    return contact


def managed_reps(user: Any) -> Any:
    """The active sales users ``user`` manages (a lead may be given to them): the reps of
    their team; with no team (or staff without one), every active sales user."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_active=True)
    team = manager_team_id(user)
    if team is not None:
        return users.filter(sales_rep__team_id=team).order_by("first_name", "username")
    sales = users.filter(groups__name__in=[SALES, SALES_MANAGER]) | users.filter(
        sales_rep__isnull=False
    )
    return sales.distinct().order_by("first_name", "username")
