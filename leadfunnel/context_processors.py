from django.http import HttpRequest

from contacts.roles import user_roles
from leadfunnel import mailbox


def roles(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    names = user_roles(user) if user is not None else frozenset()
    return {
        "is_marketer": "marketing" in names,
        "is_sales": "sales" in names,
        "is_sales_manager": "sales_manager" in names,
        # The "Sent emails" link, when emails go to the local mail folder (`make run`).
        "mail_folder": "marketing" in names and mailbox.in_use(),
    }
