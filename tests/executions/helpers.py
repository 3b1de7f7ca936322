"""Building and running workflows in execution tests."""

from agents.services import agent_create
from workflows.services import workflow_save


def node(node_id, node_type, **data):
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data}


def edge(source, target, handle=None):
    return {"source": source, "target": target, **({"source_handle": handle} if handle else {})}


def agent_with_workflow(user, nodes, edges, name="Flow"):
    """An agent of `user` whose saved workflow is (nodes, edges)."""
    agent = agent_create(user=user, fields={"name": name})
    workflow_save(agent=agent, nodes=nodes, edges=edges)
    return agent


BRANCHING_NODES = [
    node("start", "trigger", trigger_type="manual"),
    node("check", "condition", left="{{ input.score }}", operator="gte", right="50"),
    node("think", "llm", model="test/model:latest", prompt="Praise a score of {{ input.score }}"),
    node("shrug", "transform", output={"text": "Try again ({{ input.score }})"}),
    node("done", "output", value={"message": "{{ prev.text }}"}),
]
BRANCHING_EDGES = [
    edge("start", "check"),
    edge("check", "think", "true"),
    edge("check", "shrug", "false"),
    edge("think", "done"),
    edge("shrug", "done"),
]
