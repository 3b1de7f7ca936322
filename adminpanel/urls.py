from django.urls import path

from . import views

urlpatterns = [
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
