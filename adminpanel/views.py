"""The `/api/admin/*` API: admin status, users and their quota overrides, analytics, providers and models."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsAdmin
from accounts.quotas import overrides_of, overrides_remove, overrides_set
from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import PageParamsSerializer, list_body, paginate, validated_query
from claraverse.serializers import validated
from integrations import selectors, services
from integrations.serializers import (
    AdminModelSerializer,
    BenchmarkSerializer,
    ConnectionTestSerializer,
    ImportedModelsSerializer,
    ModelCreateSerializer,
    ModelUpdateSerializer,
    ProviderCreateSerializer,
    ProviderSerializer,
    ProviderUpdateSerializer,
)

from . import selectors as admin_selectors
from .serializers import (
    AdminMeSerializer,
    AdminUserDetailSerializer,
    AdminUserRowSerializer,
    OverridesSerializer,
    UserListParamsSerializer,
)

ADMIN_ERRORS = ERROR_RESPONSES.pick(401, 403, 429)


class AdminAPIView(APIView):
    """Base of every admin endpoint: authenticated and admin, else 401/403."""

    permission_classes = [IsAdmin]


class ModelListParamsSerializer(PageParamsSerializer):
    provider_id = serializers.CharField(required=False, max_length=40)


class ProviderListView(AdminAPIView):
    @extend_schema(
        operation_id="admin_providers_list",
        parameters=[PageParamsSerializer],
        responses={
            200: list_response("AdminProviderList", "providers", ProviderSerializer),
            **ERROR_RESPONSES.pick(400),
            **ADMIN_ERRORS,
        },
        tags=["admin"],
    )
    def get(self, request):
        params = validated_query(PageParamsSerializer, request.query_params)
        page = paginate(selectors.provider_list(), **params)
        return Response(list_body("providers", page, ProviderSerializer(page.items, many=True).data))

    @extend_schema(
        operation_id="admin_providers_create",
        request=ProviderCreateSerializer,
        responses={201: ProviderSerializer, **ERROR_RESPONSES.pick(400, 409), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def post(self, request):
        provider = services.provider_create(**validated(ProviderCreateSerializer, request.data))
        return Response(ProviderSerializer(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailView(AdminAPIView):
    @extend_schema(
        operation_id="admin_providers_update",
        request=ProviderUpdateSerializer,
        responses={200: ProviderSerializer, **ERROR_RESPONSES.pick(400, 404, 409), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def put(self, request, provider_id: str):
        provider = selectors.provider_get(provider_id=provider_id)
        fields = validated(ProviderUpdateSerializer, request.data)
        return Response(ProviderSerializer(services.provider_update(provider=provider, fields=fields)).data)

    @extend_schema(
        operation_id="admin_providers_delete",
        responses={
            204: OpenApiResponse(description="Deleted with its models."),
            **ERROR_RESPONSES.pick(404),
            **ADMIN_ERRORS,
        },
        tags=["admin"],
    )
    def delete(self, request, provider_id: str):
        services.provider_delete(provider=selectors.provider_get(provider_id=provider_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProviderToggleView(AdminAPIView):
    @extend_schema(
        operation_id="admin_providers_toggle",
        request=None,
        responses={200: ProviderSerializer, **ERROR_RESPONSES.pick(404), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def put(self, request, provider_id: str):
        provider = services.provider_toggle(provider=selectors.provider_get(provider_id=provider_id))
        return Response(ProviderSerializer(provider).data)


class ProviderImportModelsView(AdminAPIView):
    @extend_schema(
        operation_id="admin_providers_import_models",
        request=None,
        responses={200: ImportedModelsSerializer, **ERROR_RESPONSES.pick(404, 502), **ADMIN_ERRORS},
        tags=["admin"],
        description="Fetch the provider's `/models` list and register each model not yet known.",
    )
    def post(self, request, provider_id: str):
        result = services.provider_import_models(provider=selectors.provider_get(provider_id=provider_id))
        return Response(ImportedModelsSerializer(result).data)


class ModelListView(AdminAPIView):
    @extend_schema(
        operation_id="admin_models_list",
        parameters=[ModelListParamsSerializer],
        responses={
            200: list_response("AdminModelList", "models", AdminModelSerializer),
            **ERROR_RESPONSES.pick(400),
            **ADMIN_ERRORS,
        },
        tags=["admin"],
    )
    def get(self, request):
        params = validated_query(ModelListParamsSerializer, request.query_params)
        models = selectors.model_list(provider_id=params.pop("provider_id", None))
        page = paginate(models, **params)
        return Response(list_body("models", page, AdminModelSerializer(page.items, many=True).data))

    @extend_schema(
        operation_id="admin_models_create",
        request=ModelCreateSerializer,
        responses={201: AdminModelSerializer, **ERROR_RESPONSES.pick(400, 409), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def post(self, request):
        fields = validated(ModelCreateSerializer, request.data)
        provider = selectors.provider_get_for_input(provider_id=fields.pop("provider_id"))
        model = services.model_create(provider=provider, fields=fields)
        return Response(AdminModelSerializer(model).data, status=status.HTTP_201_CREATED)


MODEL_ID_PARAMETER = OpenApiParameter(
    "model_id", str, OpenApiParameter.PATH, description="The public model id; may contain `/` and `:`."
)


class ModelDetailView(AdminAPIView):
    @extend_schema(
        operation_id="admin_models_update",
        parameters=[MODEL_ID_PARAMETER],
        request=ModelUpdateSerializer,
        responses={200: AdminModelSerializer, **ERROR_RESPONSES.pick(400, 404), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def put(self, request, model_id: str):
        model = selectors.model_get(model_id=model_id)
        fields = validated(ModelUpdateSerializer, request.data)
        return Response(AdminModelSerializer(services.model_update(model=model, fields=fields)).data)

    @extend_schema(
        operation_id="admin_models_delete",
        parameters=[MODEL_ID_PARAMETER],
        responses={204: OpenApiResponse(description="Deleted."), **ERROR_RESPONSES.pick(404), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def delete(self, request, model_id: str):
        services.model_delete(model=selectors.model_get(model_id=model_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelTestConnectionView(AdminAPIView):
    @extend_schema(
        operation_id="admin_models_test_connection",
        parameters=[MODEL_ID_PARAMETER],
        request=None,
        responses={200: ConnectionTestSerializer, **ERROR_RESPONSES.pick(404), **ADMIN_ERRORS},
        tags=["admin"],
        description="One small real generation. A failing provider answers 200 with `success: false`.",
    )
    def post(self, request, model_id: str):
        model = selectors.model_get(model_id=model_id)
        return Response(services.model_test_connection(model=model, user=request.user))


class ModelBenchmarkView(AdminAPIView):
    @extend_schema(
        operation_id="admin_models_benchmark",
        parameters=[MODEL_ID_PARAMETER],
        request=None,
        responses={200: BenchmarkSerializer, **ERROR_RESPONSES.pick(404, 502), **ADMIN_ERRORS},
        tags=["admin"],
        description="Timed generations and JSON-Schema-validated structured-output checks; stored on the model.",
    )
    def post(self, request, model_id: str):
        model = selectors.model_get(model_id=model_id)
        return Response(services.model_benchmark(model=model, user=request.user))


# --- Admin status, users, overrides, analytics -------------------------------------------------------


class AdminMeView(AdminAPIView):
    @extend_schema(operation_id="admin_me", responses={200: AdminMeSerializer, **ADMIN_ERRORS}, tags=["admin"])
    def get(self, request):
        user = request.user
        return Response(
            {
                "id": user.id,
                "email": user.email,
                "name": user.name,
                "role": user.effective_role,
                "is_admin": True,
                "superadmin": user.pk in settings.SUPERADMIN_USER_IDS,
            }
        )


class UserListView(AdminAPIView):
    @extend_schema(
        operation_id="admin_users_list",
        parameters=[UserListParamsSerializer],
        responses={
            200: list_response("AdminUserList", "users", AdminUserRowSerializer),
            **ERROR_RESPONSES.pick(400),
            **ADMIN_ERRORS,
        },
        tags=["admin"],
    )
    def get(self, request):
        params = validated_query(UserListParamsSerializer, request.query_params)
        users = admin_selectors.user_list(search=params.get("search"), tier=params.get("tier"))
        page = paginate(users, limit=params["limit"], offset=params["offset"])
        return Response(list_body("users", page, AdminUserRowSerializer(page.items, many=True).data))


def _user_detail_body(user) -> dict:
    user.has_overrides = bool(overrides_of(user))
    return {**AdminUserRowSerializer(user).data, **admin_selectors.user_details(user)}


class UserDetailView(AdminAPIView):
    @extend_schema(
        operation_id="admin_users_get",
        responses={200: AdminUserDetailSerializer, **ERROR_RESPONSES.pick(404), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def get(self, request, user_id: str):
        return Response(_user_detail_body(admin_selectors.user_get(user_id=user_id)))


class UserOverridesView(AdminAPIView):
    @extend_schema(
        operation_id="admin_users_overrides_set",
        request=OverridesSerializer,
        responses={200: AdminUserDetailSerializer, **ERROR_RESPONSES.pick(400, 404), **ADMIN_ERRORS},
        tags=["admin"],
    )
    def post(self, request, user_id: str):
        user = admin_selectors.user_get(user_id=user_id)
        overrides_set(user=user, values=validated(OverridesSerializer, request.data))
        return Response(_user_detail_body(user))

    @extend_schema(
        operation_id="admin_users_overrides_remove",
        responses={
            204: OpenApiResponse(description="Back to the tier's limits."),
            **ERROR_RESPONSES.pick(404),
            **ADMIN_ERRORS,
        },
        tags=["admin"],
    )
    def delete(self, request, user_id: str):
        overrides_remove(user=admin_selectors.user_get(user_id=user_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _analytics_view(name: str, reader, description: str):
    class AnalyticsView(AdminAPIView):
        @extend_schema(
            operation_id=f"admin_analytics_{name}",
            responses={200: OpenApiResponse(description=description), **ADMIN_ERRORS},
            tags=["admin"],
        )
        def get(self, request):
            return Response(reader())

    AnalyticsView.__name__ = AnalyticsView.__qualname__ = f"Analytics{name.title()}View"
    return AnalyticsView


AnalyticsOverviewView = _analytics_view(
    "overview", admin_selectors.analytics_overview, "Users, active users, agents, executions, chats, messages today."
)
AnalyticsProvidersView = _analytics_view(
    "providers", admin_selectors.analytics_providers, "Requests, tokens, errors and average latency per provider."
)
AnalyticsModelsView = _analytics_view(
    "models", admin_selectors.analytics_models, "Requests, tokens, errors and average latency per model."
)
AnalyticsChatsView = _analytics_view(
    "chats", admin_selectors.analytics_chats, "Chat totals and a daily time series over the last 30 days."
)
AnalyticsAgentsView = _analytics_view(
    "agents",
    admin_selectors.analytics_agents,
    "Agent and execution totals and a daily time series over the last 30 days.",
)
