from django.urls import path

from scoring import dashboard_views, views

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
]
