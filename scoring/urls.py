from django.urls import path

from scoring import dashboard_views, quality_views, views

urlpatterns = [
    path(
        "scoring/contacts/<int:pk>/explanation/",
        views.score_explanation,
        name="score-explanation",
    ),
    path(
        "scoring/panels/distribution/",
        dashboard_views.score_distribution_panel,
        name="score-distribution-panel",
    ),
    path("scoring/quality/", quality_views.score_quality_page, name="score-quality"),
]
