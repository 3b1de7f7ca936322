"""Execution endpoints: lists, details, per-agent stats, cancel."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.views import AUTH_ERRORS, AgentScopedView
from claraverse.errors import ApplicationError
from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import list_body, paginate, validated_query
from claraverse.serializers import validated

from . import schedules, selectors, services
from .serializers import (
    ExecutionDetailSerializer,
    ExecutionListParamsSerializer,
    ExecutionSerializer,
    ExecutionStatsSerializer,
    GlobalExecutionListParamsSerializer,
    ScheduleCreateSerializer,
    ScheduleRunAcceptedSerializer,
    ScheduleRunSerializer,
    ScheduleSerializer,
    ScheduleUpdateSerializer,
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


def _schedule_of(agent):
    from .models import Schedule

    schedule = Schedule.objects.filter(agent=agent).first()
    if schedule is None:
        raise ApplicationError("NOT_FOUND", "This agent has no schedule.")
    return schedule


class ScheduleView(AgentScopedView):
    @extend_schema(
        operation_id="schedule_create",
        request=ScheduleCreateSerializer,
        responses={201: ScheduleSerializer, **ERROR_RESPONSES.pick(400, 404, 409), **AUTH_ERRORS},
        tags=["schedules"],
    )
    def post(self, request, agent_id: str):
        agent = self.get_agent(agent_id)
        body = validated(ScheduleCreateSerializer, request.data)
        schedule = schedules.schedule_create(
            agent=agent,
            cron=body["cron"],
            timezone_name=body.get("timezone", "UTC"),
            enabled=body.get("enabled", True),
            input=body.get("input"),
        )
        return Response(ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="schedule_get",
        responses={200: ScheduleSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["schedules"],
    )
    def get(self, request, agent_id: str):
        return Response(ScheduleSerializer(_schedule_of(self.get_agent(agent_id))).data)

    @extend_schema(
        operation_id="schedule_update",
        request=ScheduleUpdateSerializer,
        responses={200: ScheduleSerializer, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["schedules"],
    )
    def put(self, request, agent_id: str):
        schedule = _schedule_of(self.get_agent(agent_id))
        fields = validated(ScheduleUpdateSerializer, request.data)
        return Response(ScheduleSerializer(schedules.schedule_update(schedule=schedule, fields=fields)).data)

    @extend_schema(
        operation_id="schedule_delete",
        responses={204: OpenApiResponse(description="Deleted."), **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["schedules"],
    )
    def delete(self, request, agent_id: str):
        schedules.schedule_delete(schedule=_schedule_of(self.get_agent(agent_id)))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScheduleRunView(AgentScopedView):
    @extend_schema(
        operation_id="schedule_run_now",
        request=ScheduleRunSerializer,
        responses={202: ScheduleRunAcceptedSerializer, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["schedules"],
        description="The body's input is merged over the schedule's.",
    )
    def post(self, request, agent_id: str):
        schedule = _schedule_of(self.get_agent(agent_id))
        body = validated(ScheduleRunSerializer, request.data)
        execution = schedules.schedule_run_now(schedule=schedule, input=body["input"])
        return Response({"execution_id": execution.id, "status": "pending"}, status=status.HTTP_202_ACCEPTED)
