from django.urls import path

from . import views

urlpatterns = [
    path("providers", views.PublicProviderListView.as_view(), name="providers"),
    path("models", views.PublicModelListView.as_view(), name="models"),
    path("config/recommended-models", views.RecommendedModelsView.as_view(), name="recommended-models"),
]
