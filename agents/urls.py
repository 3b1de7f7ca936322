from django.urls import path

from executions.views import AgentExecutionListView, AgentExecutionStatsView, ScheduleRunView, ScheduleView
from workflows.views import (
    WorkflowGenerateView,
    WorkflowRestoreView,
    WorkflowVersionDetailView,
    WorkflowVersionListView,
    WorkflowView,
)

from . import views

urlpatterns = [
    path("<str:agent_id>", views.AgentDetailView.as_view(), name="agent"),
    path("<str:agent_id>/sync", views.AgentSyncView.as_view(), name="agent-sync"),
    path("<str:agent_id>/workflow", WorkflowView.as_view(), name="workflow"),
    path("<str:agent_id>/generate-workflow", WorkflowGenerateView.as_view(), name="workflow-generate"),
    path("<str:agent_id>/workflow/versions", WorkflowVersionListView.as_view(), name="workflow-versions"),
    path(
        "<str:agent_id>/workflow/versions/<int:version>", WorkflowVersionDetailView.as_view(), name="workflow-version"
    ),
    path("<str:agent_id>/workflow/restore/<int:version>", WorkflowRestoreView.as_view(), name="workflow-restore"),
    path("<str:agent_id>/executions", AgentExecutionListView.as_view(), name="agent-executions"),
    path("<str:agent_id>/schedule", ScheduleView.as_view(), name="schedule"),
    path("<str:agent_id>/schedule/run", ScheduleRunView.as_view(), name="schedule-run"),
    path("<str:agent_id>/executions/stats", AgentExecutionStatsView.as_view(), name="agent-execution-stats"),
]
