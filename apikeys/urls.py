from django.urls import path

from . import views

urlpatterns = [
    path("keys", views.ApiKeyListView.as_view(), name="keys"),
    path("keys/<str:key_id>", views.ApiKeyDetailView.as_view(), name="key"),
    path("keys/<str:key_id>/revoke", views.ApiKeyRevokeView.as_view(), name="key-revoke"),
    path("external/upload", views.ExternalUploadView.as_view(), name="external-upload"),
    path("trigger/status/<str:execution_id>", views.TriggerStatusView.as_view(), name="trigger-status"),
    path("trigger/<str:agent_id>", views.TriggerView.as_view(), name="trigger"),
]
