"""URLs of the Django example."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("users/<int:uid>", views.user, name="user"),
]
