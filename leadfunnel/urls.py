from django.contrib import admin
from django.urls import include, path

from contacts.intake import api_outcomes  # noqa: F401 (adds its routes to the API)
from contacts.intake.api import api
from leadfunnel import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("language/", views.language_set, name="language-set"),
    path("healthz", views.healthz, name="healthz"),
    path("mail/", views.mail_list, name="mail-list"),
    path("mail/<str:name>/", views.mail_email, name="mail-email"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("contacts.urls")),
    path("", include("scoring.urls")),
    path("", include("nurturing.urls")),
]

admin.site.site_header = "LeadFunnel"
admin.site.site_title = "LeadFunnel"
