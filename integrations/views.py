"""Public provider and model endpoints."""

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import PageParamsSerializer, list_body, paginate, validated_query

from . import selectors
from .serializers import ModelSerializer, PublicProviderSerializer, RecommendedModelsSerializer


class PublicProviderListView(APIView):
    """Enabled providers, without endpoints or keys."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="providers_list",
        parameters=[PageParamsSerializer],
        responses={
            200: list_response("PublicProviderList", "providers", PublicProviderSerializer),
            **ERROR_RESPONSES.pick(400, 429),
        },
        tags=["public"],
    )
    def get(self, request):
        params = validated_query(PageParamsSerializer, request.query_params)
        page = paginate(selectors.public_provider_list(), **params)
        return Response(list_body("providers", page, PublicProviderSerializer(page.items, many=True).data))


class PublicModelListView(APIView):
    """Enabled models of enabled providers."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="models_list",
        parameters=[PageParamsSerializer],
        responses={200: list_response("PublicModelList", "models", ModelSerializer), **ERROR_RESPONSES.pick(400, 429)},
        tags=["public"],
    )
    def get(self, request):
        params = validated_query(PageParamsSerializer, request.query_params)
        page = paginate(selectors.public_model_list(), **params)
        return Response(list_body("models", page, ModelSerializer(page.items, many=True).data))


class RecommendedModelsView(APIView):
    """`{default, fast, smart}` model ids."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="config_recommended_models",
        responses={200: RecommendedModelsSerializer, **ERROR_RESPONSES.pick(429)},
        tags=["public"],
    )
    def get(self, request):
        return Response(selectors.recommended_models())
