from django.urls import path

from . import views

urlpatterns = [
    path("stats", views.MemoryStatsView.as_view(), name="memory-stats"),
    path("<str:memory_id>", views.MemoryDetailView.as_view(), name="memory"),
    path("<str:memory_id>/archive", views.MemoryArchiveView.as_view(), name="memory-archive"),
    path("<str:memory_id>/unarchive", views.MemoryUnarchiveView.as_view(), name="memory-unarchive"),
]
