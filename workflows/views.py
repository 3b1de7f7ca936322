"""Workflow endpoints under `/api/agents/:id/workflow`."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from agents.views import AUTH_ERRORS, AgentScopedView
from claraverse.openapi import ERROR_RESPONSES, list_response
from claraverse.pagination import PageParamsSerializer, list_body, paginate, validated_query
from claraverse.serializers import validated

from . import selectors, services
from .generation import workflow_generate
from .serializers import (
    GeneratedWorkflowSerializer,
    GenerateWorkflowSerializer,
    WorkflowSaveSerializer,
    WorkflowSerializer,
    WorkflowVersionSerializer,
    WorkflowVersionSummarySerializer,
)


class WorkflowView(AgentScopedView):
    @extend_schema(
        operation_id="workflow_get",
        responses={200: WorkflowSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["workflows"],
    )
    def get(self, request, agent_id: str):
        return Response(WorkflowSerializer(selectors.workflow_for_agent(agent=self.get_agent(agent_id))).data)

    @extend_schema(
        operation_id="workflow_save",
        request=WorkflowSaveSerializer,
        responses={200: WorkflowSerializer, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["workflows"],
        description="Validates the whole graph; a 400 names each bad node or edge. Bumps `version` by one.",
    )
    def put(self, request, agent_id: str):
        agent = self.get_agent(agent_id)
        body = validated(WorkflowSaveSerializer, request.data)
        workflow = services.workflow_save(
            agent=agent, nodes=body["nodes"], edges=body["edges"], description=body["description"]
        )
        return Response(WorkflowSerializer(workflow).data)


class WorkflowVersionListView(AgentScopedView):
    @extend_schema(
        operation_id="workflow_versions_list",
        parameters=[PageParamsSerializer],
        responses={
            200: list_response("WorkflowVersionList", "versions", WorkflowVersionSummarySerializer),
            **ERROR_RESPONSES.pick(400, 404),
            **AUTH_ERRORS,
        },
        tags=["workflows"],
    )
    def get(self, request, agent_id: str):
        agent = self.get_agent(agent_id)
        params = validated_query(PageParamsSerializer, request.query_params)
        page = paginate(selectors.workflow_version_list(agent=agent), **params)
        return Response(list_body("versions", page, WorkflowVersionSummarySerializer(page.items, many=True).data))


class WorkflowVersionDetailView(AgentScopedView):
    @extend_schema(
        operation_id="workflow_versions_get",
        responses={200: WorkflowVersionSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["workflows"],
    )
    def get(self, request, agent_id: str, version: int):
        snapshot = selectors.workflow_version_get(agent=self.get_agent(agent_id), version=version)
        return Response(WorkflowVersionSerializer(snapshot).data)


class WorkflowRestoreView(AgentScopedView):
    @extend_schema(
        operation_id="workflow_restore",
        request=None,
        responses={200: WorkflowSerializer, **ERROR_RESPONSES.pick(400, 404), **AUTH_ERRORS},
        tags=["workflows"],
        description="Copies the version into a new version and returns the workflow.",
    )
    def post(self, request, agent_id: str, version: int):
        workflow = services.workflow_restore(agent=self.get_agent(agent_id), version=version)
        return Response(WorkflowSerializer(workflow).data)


class WorkflowGenerateView(AgentScopedView):
    @extend_schema(
        operation_id="workflow_generate",
        request=GenerateWorkflowSerializer,
        responses={200: GeneratedWorkflowSerializer, **ERROR_RESPONSES.pick(400, 404, 502), **AUTH_ERRORS},
        tags=["workflows"],
        description="A model drafts a graph from the description. The draft is validated but not saved: "
        "review it, then save it with PUT /api/agents/:id/workflow.",
    )
    def post(self, request, agent_id: str):
        agent = self.get_agent(agent_id)
        body = validated(GenerateWorkflowSerializer, request.data)
        return Response(
            workflow_generate(
                agent=agent, description=body["description"], model_id=body.get("model"), user=request.user
            )
        )
