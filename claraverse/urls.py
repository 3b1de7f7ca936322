"""Root URLs. Every `/api/` route answers errors with the envelope of CONTRACT §1."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents.views import AgentListView
from chats.views import ChatCollectionView
from executions.views import ExecutionListView
from memories.views import MemoryListView
from uploads.views import UploadCreateView, UploadFileView

from .image_proxy import ImageProxyView
from .views import HealthView, PrivacyPolicyView

urlpatterns = [
    path("health", HealthView.as_view(), name="health"),
    path("api/auth/", include("accounts.urls")),
    path("api/admin/", include("adminpanel.urls")),
    path("api/agents", AgentListView.as_view(), name="agents"),
    path("api/agents/", include("agents.urls")),
    path("api/executions", ExecutionListView.as_view(), name="executions"),
    path("api/executions/", include("executions.urls")),
    path("api/chats", ChatCollectionView.as_view(), name="chats"),
    path("api/chats/", include("chats.urls")),
    path("api/memories", MemoryListView.as_view(), name="memories"),
    path("api/memories/", include("memories.urls")),
    path("api/", include("integrations.urls")),
    path("api/", include("apikeys.urls")),
    path("api/privacy-policy", PrivacyPolicyView.as_view(), name="privacy-policy"),
    path("api/upload", UploadCreateView.as_view(), name="upload-create"),
    path("api/upload/", include("uploads.urls")),
    path("api/proxy/image", ImageProxyView.as_view(), name="image-proxy"),
    path("uploads/<str:name>", UploadFileView.as_view(), name="upload-file"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]
