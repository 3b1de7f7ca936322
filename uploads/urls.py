from django.urls import path

from . import views

urlpatterns = [
    path("<str:file_id>/status", views.UploadStatusView.as_view(), name="upload-status"),
    path("<str:file_id>", views.UploadDetailView.as_view(), name="upload"),
]
