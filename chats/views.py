"""Chat sync endpoints: upsert, get, delete, delete all, sync list, bulk sync (API.md, CONTRACT §9)."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.openapi import ERROR_RESPONSES
from claraverse.pagination import paginate, validated_query
from claraverse.serializers import validated
from claraverse.timeutils import isoformat_z

from . import selectors, services
from .serializers import (
    ChatBulkSyncResponseSerializer,
    ChatBulkSyncSerializer,
    ChatDeleteAllSerializer,
    ChatSerializer,
    ChatSyncListSerializer,
    ChatSyncParamsSerializer,
    ChatUpsertSerializer,
)

AUTH_ERRORS = ERROR_RESPONSES.pick(401, 429)


class ChatCollectionView(APIView):
    @extend_schema(
        operation_id="chats_upsert",
        request=ChatUpsertSerializer,
        responses={
            200: OpenApiResponse(ChatSerializer, description="Updated an existing chat."),
            201: OpenApiResponse(ChatSerializer, description="Created a new chat."),
            **ERROR_RESPONSES.pick(400, 409),
            **AUTH_ERRORS,
        },
        tags=["chats"],
        description=(
            "Create or update the caller's chat with this `id` (a new `chat_` id when missing). Only the fields "
            "sent change. A `version` lower than the stored one is a 409 CONFLICT with "
            "`details.current_version`; each successful write bumps the version by one (a new chat is version 1)."
        ),
    )
    def post(self, request):
        chat, created = services.chat_upsert(user=request.user, fields=validated(ChatUpsertSerializer, request.data))
        return Response(ChatSerializer(chat).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="chats_delete_all",
        responses={200: ChatDeleteAllSerializer, **AUTH_ERRORS},
        tags=["chats"],
        description="Delete every chat of the caller (GDPR); answers how many were deleted.",
    )
    def delete(self, request):
        return Response({"deleted": services.chats_delete_all(user=request.user)})


class ChatSyncView(APIView):
    @extend_schema(
        operation_id="chats_sync_list",
        parameters=[ChatSyncParamsSerializer],
        responses={200: ChatSyncListSerializer, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["chats"],
        description=(
            "The caller's chats, most recently changed first, `limit` (default 20, 1-100) and `offset` paged. "
            "With `since`, only chats changed after it. Keep `synced_at` of the first page as the next `since`."
        ),
    )
    def get(self, request):
        params = validated_query(ChatSyncParamsSerializer, request.query_params)
        # Taken before the query: a chat written meanwhile is then newer than the next `since`, never lost.
        now = timezone.now()
        chats = selectors.chat_list_changed(user=request.user, since=params.get("since"))
        page = paginate(chats, limit=params["limit"], offset=params["offset"])
        return Response(
            {
                "chats": ChatSerializer(page.items, many=True).data,
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
                "synced_at": isoformat_z(now),
            }
        )

    @extend_schema(
        operation_id="chats_sync_bulk",
        request=ChatBulkSyncSerializer,
        responses={200: ChatBulkSyncResponseSerializer, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["chats"],
        description=(
            "Upsert up to 100 chats, each on its own as `POST /api/chats` would: a stale one is a `conflict` "
            "(with its current version), an invalid one `failed` (with the reason); the others are saved."
        ),
    )
    def post(self, request):
        body = validated(ChatBulkSyncSerializer, request.data)
        return Response(services.chats_sync(user=request.user, chats=body["chats"]))


class ChatDetailView(APIView):
    @extend_schema(
        operation_id="chats_get",
        responses={200: ChatSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["chats"],
    )
    def get(self, request, chat_id: str):
        return Response(ChatSerializer(selectors.chat_get(user=request.user, chat_id=chat_id)).data)

    @extend_schema(
        operation_id="chats_delete",
        responses={204: OpenApiResponse(description="Deleted."), **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["chats"],
    )
    def delete(self, request, chat_id: str):
        services.chat_delete(chat=selectors.chat_get(user=request.user, chat_id=chat_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
