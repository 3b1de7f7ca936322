"""Memory endpoints: list, create, get, update, delete, archive, unarchive, stats."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import list_body, paginate, validated_query
from claraverse.serializers import validated

from . import selectors, services
from .serializers import (
    MemoryCreateSerializer,
    MemoryListParamsSerializer,
    MemorySerializer,
    MemoryStatsSerializer,
    MemoryUpdateSerializer,
)

AUTH_ERRORS = ERROR_RESPONSES.pick(401, 429)


class MemoryScopedView(APIView):
    """Base of every `/api/memories/:id...` view: the memory is looked up among the caller's own (404 otherwise)."""

    def get_memory(self, memory_id: str):
        return selectors.memory_get(user=self.request.user, memory_id=memory_id)


class MemoryListView(APIView):
    @extend_schema(
        operation_id="memories_list",
        parameters=[MemoryListParamsSerializer],
        responses={
            200: list_response("MemoryList", "memories", MemorySerializer),
            **ERROR_RESPONSES.pick(400),
            **AUTH_ERRORS,
        },
        tags=["memories"],
        description="Newest first. Active memories only unless `archived=true`.",
    )
    def get(self, request):
        params = validated_query(MemoryListParamsSerializer, request.query_params)
        memories = selectors.memory_list(
            user=request.user,
            include_archived=params["archived"],
            category=params.get("category"),
            query=params.get("q"),
        )
        page = paginate(memories, limit=params["limit"], offset=params["offset"])
        return Response(list_body("memories", page, MemorySerializer(page.items, many=True).data))

    @extend_schema(
        operation_id="memories_create",
        request=MemoryCreateSerializer,
        responses={201: MemorySerializer, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["memories"],
        description="429 QUOTA_EXCEEDED once the user holds MEMORY_MAX_PER_USER memories (archived included).",
    )
    def post(self, request):
        memory = services.memory_create(user=request.user, **validated(MemoryCreateSerializer, request.data))
        return Response(MemorySerializer(memory).data, status=status.HTTP_201_CREATED)


class MemoryStatsView(APIView):
    @extend_schema(
        operation_id="memories_stats",
        responses={200: MemoryStatsSerializer, **AUTH_ERRORS},
        tags=["memories"],
    )
    def get(self, request):
        return Response(selectors.memory_stats(user=request.user))


class MemoryDetailView(MemoryScopedView):
    @extend_schema(
        operation_id="memories_get",
        responses={200: MemorySerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["memories"],
    )
    def get(self, request, memory_id: str):
        return Response(MemorySerializer(self.get_memory(memory_id)).data)

    @extend_schema(
        operation_id="memories_update",
        request=MemoryUpdateSerializer,
        responses={200: MemorySerializer, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["memories"],
    )
    def put(self, request, memory_id: str):
        memory = self.get_memory(memory_id)
        fields = validated(MemoryUpdateSerializer, request.data)
        return Response(MemorySerializer(services.memory_update(memory=memory, fields=fields)).data)

    @extend_schema(
        operation_id="memories_delete",
        responses={204: OpenApiResponse(description="Deleted."), **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["memories"],
    )
    def delete(self, request, memory_id: str):
        services.memory_delete(memory=self.get_memory(memory_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemoryArchiveView(MemoryScopedView):
    @extend_schema(
        operation_id="memories_archive",
        request=None,
        responses={200: MemorySerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["memories"],
        description="Chat stops using an archived memory. Archiving an archived memory changes nothing.",
    )
    def post(self, request, memory_id: str):
        return Response(MemorySerializer(services.memory_archive(memory=self.get_memory(memory_id))).data)


class MemoryUnarchiveView(MemoryScopedView):
    @extend_schema(
        operation_id="memories_unarchive",
        request=None,
        responses={200: MemorySerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["memories"],
    )
    def post(self, request, memory_id: str):
        return Response(MemorySerializer(services.memory_unarchive(memory=self.get_memory(memory_id))).data)
