"""Tool, integration and credential endpoints."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.errors import ApplicationError
from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import list_body, paginate, validated_query
from claraverse.serializers import validated

from . import credentials as credential_services
from .catalogue import integrations_public
from .models import Credential
from .recommend import tools_recommend
from .serializers import (
    CredentialCreateSerializer,
    CredentialListParamsSerializer,
    CredentialSerializer,
    CredentialUpdateSerializer,
    IntegrationListSerializer,
    RecommendationsSerializer,
    RecommendInputSerializer,
    RegistrySerializer,
    TestResultSerializer,
    ToolListSerializer,
)
from .tools import tool_registry

AUTH_ERRORS = ERROR_RESPONSES.pick(401, 429)


def _held_integrations(user) -> set[str]:
    return set(Credential.objects.filter(user=user).values_list("integration_id", flat=True))


class ToolListView(APIView):
    @extend_schema(operation_id="tools_list", responses={200: ToolListSerializer, **AUTH_ERRORS}, tags=["tools"])
    def get(self, request):
        return Response({"tools": [tool.public_dict() for tool in tool_registry.all()]})


class AvailableToolListView(APIView):
    @extend_schema(
        operation_id="tools_available",
        responses={200: ToolListSerializer, **AUTH_ERRORS},
        tags=["tools"],
        description="Tools needing no integration, plus those whose integration the user holds a credential for.",
    )
    def get(self, request):
        tools = tool_registry.available(_held_integrations(request.user))
        return Response({"tools": [tool.public_dict() for tool in tools]})


class ToolRecommendView(APIView):
    @extend_schema(
        operation_id="tools_recommend",
        request=RecommendInputSerializer,
        responses={200: RecommendationsSerializer, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["tools"],
    )
    def post(self, request):
        body = validated(RecommendInputSerializer, request.data)
        return Response({"recommendations": tools_recommend(task=body["task"], limit=body["limit"], user=request.user)})


class ToolRegistryView(APIView):
    @extend_schema(
        operation_id="tools_registry",
        responses={200: RegistrySerializer, **AUTH_ERRORS},
        tags=["tools"],
        description="Tools, categories and node types (with data schemas) for the workflow builder.",
    )
    def get(self, request):
        from workflows.catalogue import node_types_public

        return Response(
            {
                "tools": [tool.public_dict() for tool in tool_registry.all()],
                "categories": tool_registry.categories(),
                "node_types": node_types_public(),
            }
        )


class IntegrationListView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="integrations_list",
        responses={200: IntegrationListSerializer, **ERROR_RESPONSES.pick(429)},
        tags=["public"],
    )
    def get(self, request):
        return Response({"integrations": integrations_public()})


def _credential_get(user, credential_id: str) -> Credential:
    credential = Credential.objects.filter(pk=credential_id, user=user).first()
    if credential is None:
        raise ApplicationError("NOT_FOUND", "Credential not found.")
    return credential


class CredentialListView(APIView):
    @extend_schema(
        operation_id="credentials_list",
        parameters=[CredentialListParamsSerializer],
        responses={
            200: list_response("CredentialList", "credentials", CredentialSerializer),
            **ERROR_RESPONSES.pick(400),
            **AUTH_ERRORS,
        },
        tags=["credentials"],
    )
    def get(self, request):
        params = validated_query(CredentialListParamsSerializer, request.query_params)
        credentials = Credential.objects.filter(user=request.user).order_by("-created_at", "-id")
        if params.get("integration_id"):
            credentials = credentials.filter(integration_id=params["integration_id"])
        page = paginate(credentials, limit=params["limit"], offset=params["offset"])
        return Response(list_body("credentials", page, CredentialSerializer(page.items, many=True).data))

    @extend_schema(
        operation_id="credentials_create",
        request=CredentialCreateSerializer,
        responses={201: CredentialSerializer, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["credentials"],
    )
    def post(self, request):
        body = validated(CredentialCreateSerializer, request.data)
        credential = credential_services.credential_create(
            user=request.user, integration_id=body["integration_id"], name=body["name"], values=body["credentials"]
        )
        return Response(CredentialSerializer(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetailView(APIView):
    @extend_schema(
        operation_id="credentials_get",
        responses={200: CredentialSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["credentials"],
    )
    def get(self, request, credential_id: str):
        return Response(CredentialSerializer(_credential_get(request.user, credential_id)).data)

    @extend_schema(
        operation_id="credentials_update",
        request=CredentialUpdateSerializer,
        responses={200: CredentialSerializer, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["credentials"],
        description="Fields sent in `credentials` replace the stored ones; the others are kept.",
    )
    def put(self, request, credential_id: str):
        credential = _credential_get(request.user, credential_id)
        body = validated(CredentialUpdateSerializer, request.data)
        credential = credential_services.credential_update(
            credential=credential, name=body.get("name"), values=body.get("credentials")
        )
        return Response(CredentialSerializer(credential).data)

    @extend_schema(
        operation_id="credentials_delete",
        responses={204: OpenApiResponse(description="Deleted."), **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["credentials"],
    )
    def delete(self, request, credential_id: str):
        credential_services.credential_delete(credential=_credential_get(request.user, credential_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CredentialTestView(APIView):
    @extend_schema(
        operation_id="credentials_test",
        request=None,
        responses={200: TestResultSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["credentials"],
        description="A real call with the credential; a failure answers 200 with `success: false`.",
    )
    def post(self, request, credential_id: str):
        credential = _credential_get(request.user, credential_id)
        return Response(credential_services.credential_test(credential=credential))
