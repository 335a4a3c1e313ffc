from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from leadfunnel.models import Profile

User = get_user_model()


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    fields = ["language"]


admin.site.unregister(User)


@admin.register(User)
class LeadFunnelUserAdmin(UserAdmin):
    inlines = [ProfileInline]
    list_display = ["username", "email", "first_name", "last_name", "is_staff", "role_names"]
    list_filter = ["groups", "is_staff", "is_active"]

    @admin.display(description="roles")
    def role_names(self, user: User) -> str:  # type: ignore[valid-type]
        return ", ".join(group.name for group in user.groups.all())

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("groups")
