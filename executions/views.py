"""Execution endpoints: lists, details, per-agent stats, cancel."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.views import AUTH_ERRORS, AgentScopedView
from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import list_body, paginate, validated_query

from . import selectors, services
from .serializers import (
    ExecutionDetailSerializer,
    ExecutionListParamsSerializer,
    ExecutionSerializer,
    ExecutionStatsSerializer,
    GlobalExecutionListParamsSerializer,
)

EXECUTION_LIST = list_response("ExecutionList", "executions", ExecutionSerializer)


def _page(request, executions, params) -> Response:
    page = paginate(executions, limit=params["limit"], offset=params["offset"])
    return Response(list_body("executions", page, ExecutionSerializer(page.items, many=True).data))


class ExecutionListView(APIView):
    @extend_schema(
        operation_id="executions_list",
        parameters=[GlobalExecutionListParamsSerializer],
        responses={200: EXECUTION_LIST, **ERROR_RESPONSES.pick(400), **AUTH_ERRORS},
        tags=["executions"],
    )
    def get(self, request):
        params = validated_query(GlobalExecutionListParamsSerializer, request.query_params)
        executions = selectors.execution_list(
            user=request.user,
            agent_id=params.get("agent_id"),
            status=params.get("status"),
            trigger=params.get("trigger"),
        )
        return _page(request, executions, params)


class AgentExecutionListView(AgentScopedView):
    @extend_schema(
        operation_id="agent_executions_list",
        parameters=[ExecutionListParamsSerializer],
        responses={200: EXECUTION_LIST, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["executions"],
    )
    def get(self, request, agent_id: str):
        agent = self.get_agent(agent_id)
        params = validated_query(ExecutionListParamsSerializer, request.query_params)
        executions = selectors.execution_list(
            user=request.user, agent_id=agent.id, status=params.get("status"), trigger=params.get("trigger")
        )
        return _page(request, executions, params)


class AgentExecutionStatsView(AgentScopedView):
    @extend_schema(
        operation_id="agent_executions_stats",
        responses={200: ExecutionStatsSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["executions"],
    )
    def get(self, request, agent_id: str):
        agent = self.get_agent(agent_id)
        return Response(selectors.execution_stats(user=request.user, agent_id=agent.id))


class ExecutionDetailView(APIView):
    @extend_schema(
        operation_id="executions_get",
        responses={200: ExecutionDetailSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["executions"],
    )
    def get(self, request, execution_id: str):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        return Response(ExecutionDetailSerializer(execution).data)


class ExecutionCancelView(APIView):
    @extend_schema(
        operation_id="executions_cancel",
        request=None,
        responses={200: ExecutionSerializer, **ERROR_RESPONSES.pick(404, 409), **AUTH_ERRORS},
        tags=["executions"],
        description="Cancels a pending or running execution; 409 if it already ended.",
    )
    def post(self, request, execution_id: str):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        return Response(ExecutionSerializer(services.execution_cancel(execution=execution)).data)
