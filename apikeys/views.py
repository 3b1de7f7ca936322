"""API key management (JWT) and the external trigger endpoints (X-API-Key)."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.errors import ApplicationError
from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import PageParamsSerializer, list_body, paginate, validated_query
from claraverse.ratelimit import AuthenticatedThrottle
from claraverse.serializers import validated
from uploads.parsers import UploadMultiPartParser, multipart_data
from uploads.serializers import UploadCreateSerializer, UploadSerializer
from uploads.services import upload_create
from uploads.throttles import UploadThrottle

from . import services
from .authentication import ApiKeyAuthentication
from .models import ApiKey
from .serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    TriggerAcceptedSerializer,
    TriggerInputSerializer,
    TriggerStatusSerializer,
)

AUTH_ERRORS = ERROR_RESPONSES.pick(401, 429)


def _key_get(user, key_id: str) -> ApiKey:
    key = ApiKey.objects.filter(pk=key_id, user=user).first()
    if key is None:
        raise ApplicationError("NOT_FOUND", "API key not found.")
    return key


class ApiKeyListView(APIView):
    @extend_schema(
        operation_id="keys_list",
        parameters=[PageParamsSerializer],
        responses={
            200: list_response("ApiKeyList", "keys", ApiKeySerializer),
            **ERROR_RESPONSES.pick(400),
            **AUTH_ERRORS,
        },
        tags=["keys"],
    )
    def get(self, request):
        params = validated_query(PageParamsSerializer, request.query_params)
        page = paginate(ApiKey.objects.filter(user=request.user).order_by("-created_at", "-id"), **params)
        return Response(list_body("keys", page, ApiKeySerializer(page.items, many=True).data))

    @extend_schema(
        operation_id="keys_create",
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyCreatedSerializer, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["keys"],
        description="The full key and the webhook signing secret appear only here.",
    )
    def post(self, request):
        body = validated(ApiKeyCreateSerializer, request.data)
        key, raw_key, secret = services.key_create(
            user=request.user,
            name=body["name"],
            scopes=body["scopes"],
            agent_ids=body["agent_ids"],
            expires_at=body.get("expires_at"),
        )
        data = {**ApiKeySerializer(key).data, "key": raw_key, "webhook_secret": secret}
        data.pop("last_used_at"), data.pop("revoked_at")
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    @extend_schema(
        operation_id="keys_delete",
        responses={204: OpenApiResponse(description="Deleted."), **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["keys"],
    )
    def delete(self, request, key_id: str):
        services.key_delete(key=_key_get(request.user, key_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyRevokeView(APIView):
    @extend_schema(
        operation_id="keys_revoke",
        request=None,
        responses={200: ApiKeySerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["keys"],
    )
    def post(self, request, key_id: str):
        return Response(ApiKeySerializer(services.key_revoke(key=_key_get(request.user, key_id))).data)


class ExternalAPIView(APIView):
    """Base of the X-API-Key endpoints."""

    authentication_classes = [ApiKeyAuthentication]


class TriggerView(ExternalAPIView):
    @extend_schema(
        operation_id="trigger_agent",
        request=TriggerInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="A retry with the same key within 24 h returns the first answer.",
            )
        ],
        responses={202: TriggerAcceptedSerializer, **ERROR_RESPONSES.pick(400, 403, 404), **AUTH_ERRORS},
        tags=["trigger"],
    )
    def post(self, request, agent_id: str):
        body = validated(TriggerInputSerializer, request.data)
        idempotency_key = request.headers.get("Idempotency-Key", "").strip()[:255] or None
        if idempotency_key and not idempotency_key.isprintable():
            # Control characters (NUL above all, which PostgreSQL cannot store) make no sense in a key.
            raise ApplicationError(
                "VALIDATION_ERROR",
                "Idempotency-Key: Must be printable text.",
                details={"Idempotency-Key": ["Must be printable text."]},
            )
        answer = services.trigger_agent(
            key=request.auth,
            agent_id=agent_id,
            input=body["input"],
            webhook_url=body.get("webhook_url"),
            idempotency_key=idempotency_key,
        )
        return Response(answer, status=status.HTTP_202_ACCEPTED)


class TriggerStatusView(ExternalAPIView):
    @extend_schema(
        operation_id="trigger_status",
        responses={200: TriggerStatusSerializer, **ERROR_RESPONSES.pick(403, 404), **AUTH_ERRORS},
        tags=["trigger"],
    )
    def get(self, request, execution_id: str):
        from executions.models import Execution

        key = request.auth
        services.key_require_scope(key, "trigger")
        execution = Execution.objects.filter(pk=execution_id, user=key.user).first()
        if execution is None or (key.agent_ids and execution.agent_id not in key.agent_ids):
            raise ApplicationError("NOT_FOUND", "Execution not found.")
        return Response(TriggerStatusSerializer(execution).data)


class ExternalUploadView(ExternalAPIView):
    """`POST /api/external/upload`: the upload service of the web app, for an API key with `upload`."""

    parser_classes = [UploadMultiPartParser]
    throttle_classes = [AuthenticatedThrottle, UploadThrottle]

    @extend_schema(
        operation_id="external_upload",
        request={"multipart/form-data": UploadCreateSerializer},
        responses={201: UploadSerializer, **ERROR_RESPONSES.pick(400, 403, 413, 415), **AUTH_ERRORS},
        tags=["trigger"],
        description="The same rules as POST /api/upload (types, size, rate limit), with an X-API-Key carrying "
        "the `upload` scope; the file belongs to the key's owner.",
    )
    def post(self, request):
        services.key_require_scope(request.auth, "upload")
        body = validated(UploadCreateSerializer, multipart_data(request))
        upload = upload_create(user=request.user, uploaded_file=body["file"], source="external")
        return Response(UploadSerializer(upload).data, status=status.HTTP_201_CREATED)
