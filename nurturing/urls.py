from django.urls import include, path

from nurturing import views

urlpatterns = [
    path("e/o/<str:token>.gif", views.open_pixel, name="nurturing-open"),
    path("e/c/<str:token>", views.click, name="nurturing-click"),
    path("e/u/<str:token>", views.unsubscribe, name="nurturing-unsubscribe"),
    path("esp/", include("nurturing.esp_webhooks")),
    path("nurturing/sequences/", views.sequence_list, name="nurturing-sequences"),
    path("nurturing/sequences/<int:pk>/", views.sequence_results, name="nurturing-sequence"),
    path("nurturing/enroll/", views.enroll_list, name="nurturing-enroll-list"),
    path("nurturing/enroll/preflight/", views.enroll_preflight, name="nurturing-enroll-preflight"),
    path(
        "nurturing/sequences/<int:pk>/activate/",
        views.sequence_activate,
        name="nurturing-sequence-activate",
    ),
    path(
        "nurturing/sequences/<int:pk>/enroll/",
        views.sequence_enroll_list,
        name="nurturing-sequence-enroll",
    ),
    path(
        "nurturing/contacts/<int:pk>/enrollments/",
        views.contact_enrollments,
        name="nurturing-contact-enrollments",
    ),
    path(
        "nurturing/contacts/<int:pk>/enroll/", views.contact_enroll, name="nurturing-contact-enroll"
    ),
]
