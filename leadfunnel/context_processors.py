from django.http import HttpRequest

from leadfunnel.roles import user_roles


def roles(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    names = user_roles(user) if user is not None else frozenset()
    return {
        "is_marketer": "marketing" in names,
        "is_sales": "sales" in names,
    }
