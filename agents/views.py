"""Agent endpoints: list, create, get, update, delete, sync."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import list_body, paginate, validated_query
from claraverse.serializers import validated
from workflows.serializers import WorkflowSerializer

from . import selectors, services
from .serializers import (
    AgentCreateSerializer,
    AgentListParamsSerializer,
    AgentSerializer,
    AgentSyncSerializer,
    AgentUpdateSerializer,
)

AUTH_ERRORS = ERROR_RESPONSES.pick(401, 429)


class AgentScopedView(APIView):
    """Base of every `/api/agents/:id/...` view: the agent is looked up among the caller's own (404 otherwise)."""

    def get_agent(self, agent_id: str):
        return selectors.agent_get(user=self.request.user, agent_id=agent_id)


class AgentListView(APIView):
    @extend_schema(
        operation_id="agents_list",
        parameters=[AgentListParamsSerializer],
        responses={
            200: list_response("AgentList", "agents", AgentSerializer),
            **ERROR_RESPONSES.pick(400),
            **AUTH_ERRORS,
        },
        tags=["agents"],
    )
    def get(self, request):
        params = validated_query(AgentListParamsSerializer, request.query_params)
        page = paginate(
            selectors.agent_list(user=request.user, sort=params["sort"]), limit=params["limit"], offset=params["offset"]
        )
        return Response(list_body("agents", page, AgentSerializer(page.items, many=True).data))

    @extend_schema(
        operation_id="agents_create",
        request=AgentCreateSerializer,
        responses={201: AgentSerializer, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["agents"],
    )
    def post(self, request):
        agent = services.agent_create(user=request.user, fields=validated(AgentCreateSerializer, request.data))
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(AgentScopedView):
    @extend_schema(
        operation_id="agents_get",
        responses={200: AgentSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["agents"],
    )
    def get(self, request, agent_id: str):
        return Response(AgentSerializer(self.get_agent(agent_id)).data)

    @extend_schema(
        operation_id="agents_update",
        request=AgentUpdateSerializer,
        responses={200: AgentSerializer, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["agents"],
    )
    def put(self, request, agent_id: str):
        agent = self.get_agent(agent_id)
        fields = validated(AgentUpdateSerializer, request.data)
        return Response(AgentSerializer(services.agent_update(agent=agent, fields=fields)).data)

    @extend_schema(
        operation_id="agents_delete",
        responses={
            204: OpenApiResponse(description="Deleted with its workflow, versions and schedule."),
            **ERROR_RESPONSES.pick(404),
            **AUTH_ERRORS,
        },
        tags=["agents"],
    )
    def delete(self, request, agent_id: str):
        services.agent_delete(agent=self.get_agent(agent_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


AgentSyncResultSerializer = inline_serializer(
    name="AgentSyncResult", fields={"agent": AgentSerializer(), "workflow": WorkflowSerializer()}
)


class AgentSyncView(APIView):
    @extend_schema(
        operation_id="agents_sync",
        request=AgentSyncSerializer,
        responses={200: AgentSyncResultSerializer, **ERROR_RESPONSES.pick(400, 404, 409), **AUTH_ERRORS},
        tags=["agents"],
        description="Upsert an agent under a client-chosen `agent_` id, and its workflow when given.",
    )
    def post(self, request, agent_id: str):
        body = validated(AgentSyncSerializer, request.data)
        agent, workflow = services.agent_sync(
            user=request.user, agent_id=agent_id, agent_data=body["agent"], workflow_data=body.get("workflow")
        )
        return Response({"agent": AgentSerializer(agent).data, "workflow": WorkflowSerializer(workflow).data})
