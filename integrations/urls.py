from django.urls import path

from . import tool_views, views

urlpatterns = [
    path("providers", views.PublicProviderListView.as_view(), name="providers"),
    path("models", views.PublicModelListView.as_view(), name="models"),
    path("config/recommended-models", views.RecommendedModelsView.as_view(), name="recommended-models"),
    path("tools", tool_views.ToolListView.as_view(), name="tools"),
    path("tools/available", tool_views.AvailableToolListView.as_view(), name="tools-available"),
    path("tools/recommend", tool_views.ToolRecommendView.as_view(), name="tools-recommend"),
    path("tools/registry", tool_views.ToolRegistryView.as_view(), name="tools-registry"),
    path("integrations", tool_views.IntegrationListView.as_view(), name="integrations"),
    path("credentials", tool_views.CredentialListView.as_view(), name="credentials"),
    path("credentials/<str:credential_id>", tool_views.CredentialDetailView.as_view(), name="credential"),
    path("credentials/<str:credential_id>/test", tool_views.CredentialTestView.as_view(), name="credential-test"),
]
