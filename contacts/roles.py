"""Roles are Django groups (marketing, sales); staff users are admins and may do everything."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

MARKETING = "marketing"
SALES = "sales"
# A sales manager is a sales user who also sees the team's leads, reassigns them and sees the
# pipeline; a member of this group holds both roles.
SALES_MANAGER = "sales_manager"
ROLE_GROUPS = (MARKETING, SALES, SALES_MANAGER)


def user_roles(user: Any) -> frozenset[str]:
    """The user's role names, read once per request and kept on the user object."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    if not hasattr(user, "_leadfunnel_roles"):
        names = set(user.groups.filter(name__in=ROLE_GROUPS).values_list("name", flat=True))
        if SALES_MANAGER in names:
            names.add(SALES)
        if user.is_staff:
            names |= {MARKETING, SALES, SALES_MANAGER, "admin"}
        user._leadfunnel_roles = frozenset(names)
    return user._leadfunnel_roles


def is_marketer(user: Any) -> bool:
    return MARKETING in user_roles(user)


def is_sales(user: Any) -> bool:
    return SALES in user_roles(user)


def is_sales_manager(user: Any) -> bool:
    return SALES_MANAGER in user_roles(user)


def role_required(
    *roles: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Login first (redirect), then 403 unless the user holds one of ``roles``."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not user_roles(request.user) & set(roles):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
