from django.urls import path

from . import views

urlpatterns = [
    path("me", views.AdminMeView.as_view(), name="admin-me"),
    path("users", views.UserListView.as_view(), name="admin-users"),
    path("users/<str:user_id>", views.UserDetailView.as_view(), name="admin-user"),
    path("users/<str:user_id>/overrides", views.UserOverridesView.as_view(), name="admin-user-overrides"),
    path("analytics/overview", views.AnalyticsOverviewView.as_view(), name="admin-analytics-overview"),
    path("analytics/providers", views.AnalyticsProvidersView.as_view(), name="admin-analytics-providers"),
    path("analytics/models", views.AnalyticsModelsView.as_view(), name="admin-analytics-models"),
    path("analytics/chats", views.AnalyticsChatsView.as_view(), name="admin-analytics-chats"),
    path("analytics/agents", views.AnalyticsAgentsView.as_view(), name="admin-analytics-agents"),
    path("providers", views.ProviderListView.as_view(), name="admin-providers"),
    path("providers/<str:provider_id>", views.ProviderDetailView.as_view(), name="admin-provider"),
    path("providers/<str:provider_id>/toggle", views.ProviderToggleView.as_view(), name="admin-provider-toggle"),
    path(
        "providers/<str:provider_id>/models/import",
        views.ProviderImportModelsView.as_view(),
        name="admin-provider-import-models",
    ),
    path("models", views.ModelListView.as_view(), name="admin-models"),
    # Model ids may contain `/`, so the action routes come before the catch-all detail route.
    path(
        "models/<path:model_id>/test/connection",
        views.ModelTestConnectionView.as_view(),
        name="admin-model-test-connection",
    ),
    path("models/<path:model_id>/benchmark", views.ModelBenchmarkView.as_view(), name="admin-model-benchmark"),
    path("models/<path:model_id>", views.ModelDetailView.as_view(), name="admin-model"),
]
