from django.urls import path

from . import views

urlpatterns = [
    path("<str:execution_id>", views.ExecutionDetailView.as_view(), name="execution"),
    path("<str:execution_id>/cancel", views.ExecutionCancelView.as_view(), name="execution-cancel"),
]
