from django.urls import path

from scoring import views

urlpatterns = [
    path(
        "scoring/contacts/<int:pk>/explanation/",
        views.score_explanation,
        name="score-explanation",
    ),
]
