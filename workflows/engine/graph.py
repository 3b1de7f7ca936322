"""The workflow graph as the engine sees it: node specs, edges, loop bodies and scheduling levels."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Node types whose outgoing edges are chosen by a named handle.
BRANCH_TYPES = frozenset({"condition", "switch"})
CONDITION_HANDLES = ("true", "false")
LOOP_HANDLES = ("loop", "done")
DEFAULT_HANDLE = "default"
LOOP_BODY_HANDLE = "loop"
LOOP_DONE_HANDLE = "done"


class GraphError(ValueError):
    """The graph cannot be run (it was not validated): the message says why."""


@dataclass(frozen=True)
class NodeSpec:
    """One node, with its common fields resolved to defaults."""

    id: str
    type: str
    data: Mapping[str, Any]
    max_attempts: int = 1
    backoff_ms: int = 1000
    timeout_ms: int | None = None
    on_error: str = "fail"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class EdgeSpec:
    """One edge; `handle` is the source handle (None for a plain edge)."""

    source: str
    target: str
    handle: str | None = None


def find_cycle(node_ids: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts (`["a", "b", "a"]`), or None; iterative, no recursion."""
    children: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    for source, target in edges:
        if source in children and target in children:
            children[source].append(target)
    state: dict[str, int] = dict.fromkeys(children, 0)  # 0 new, 1 on the current path, 2 done
    for root in children:
        if state[root]:
            continue
        path = [root]
        iterators = [iter(children[root])]
        state[root] = 1
        while iterators:
            child = next(iterators[-1], None)
            if child is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state[child] == 1:
                return [*path[path.index(child) :], child]
            elif state[child] == 0:
                state[child] = 1
                path.append(child)
                iterators.append(iter(children[child]))
    return None


def topological_order(node_ids: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Kahn's order, ties broken by the given node order (so runs are deterministic)."""
    position = {node_id: index for index, node_id in enumerate(node_ids)}
    indegree = dict.fromkeys(node_ids, 0)
    children: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    for source, target in edges:
        if source in position and target in position:
            children[source].append(target)
            indegree[target] += 1
    ready = [position[node_id] for node_id in node_ids if indegree[node_id] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node_id = node_ids[heapq.heappop(ready)]
        order.append(node_id)
        for child in children[node_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, position[child])
    return order


def loop_bodies(loop_ids: Iterable[str], edges: Sequence[EdgeSpec]) -> dict[str, set[str]]:
    """For each loop node, the nodes reachable from its "loop" handle (its body)."""
    children: dict[str, list[str]] = {}
    for edge in edges:
        children.setdefault(edge.source, []).append(edge.target)
    bodies: dict[str, set[str]] = {}
    for loop_id in loop_ids:
        body: set[str] = set()
        stack = [edge.target for edge in edges if edge.source == loop_id and edge.handle == LOOP_BODY_HANDLE]
        while stack:
            node_id = stack.pop()
            if node_id in body or node_id == loop_id:
                continue
            body.add(node_id)
            stack.extend(children.get(node_id, ()))
        bodies[loop_id] = body
    return bodies


def loop_body_violations(bodies: Mapping[str, set[str]], edges: Sequence[EdgeSpec]) -> list[tuple[int, str]]:
    """Edges that enter a loop body other than through its "loop" handle, as `(edge index, message)`."""
    problems = []
    for index, edge in enumerate(edges):
        for loop_id, body in bodies.items():
            if edge.target not in body or edge.source in body:
                continue
            if edge.source == loop_id and edge.handle == LOOP_BODY_HANDLE:
                continue
            if edge.source == loop_id:
                message = f"the '{edge.handle}' handle of loop '{loop_id}' leads into the loop's own body"
            else:
                message = (
                    f"node '{edge.target}' is in the body of loop '{loop_id}', so it can only be reached "
                    f"from the loop's 'loop' handle or from other nodes of that body (not from '{edge.source}')"
                )
            problems.append((index, message))
    return problems


def _as_int(value: Any, default: int | None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def node_spec(raw: Mapping[str, Any]) -> NodeSpec:
    """A `NodeSpec` from a node dict, common fields defaulted when absent or malformed."""
    retry = raw.get("retry") if isinstance(raw.get("retry"), Mapping) else {}
    data = raw.get("data")
    return NodeSpec(
        id=raw["id"],
        type=raw["type"],
        data=data if isinstance(data, Mapping) else {},
        max_attempts=max(1, min(_as_int(retry.get("max_attempts"), 1) or 1, 10)),
        backoff_ms=max(0, _as_int(retry.get("backoff_ms"), 1000) or 0),
        timeout_ms=_as_int(raw.get("timeout_ms"), None),
        on_error="continue" if raw.get("on_error") == "continue" else "fail",
        raw=raw,
    )


@dataclass
class Graph:
    """A prepared graph: specs in the workflow's node order, edges, and loop structure."""

    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    by_id: dict[str, NodeSpec]
    bodies: dict[str, set[str]]
    owner: dict[str, str | None]  # innermost loop whose body holds the node (None: top level)

    def level(self, owner: str | None) -> list[str]:
        """Node ids scheduled together (top level, or the direct members of one loop body), in node order."""
        return [spec.id for spec in self.nodes if self.owner[spec.id] == owner]

    def level_edges(self, owner: str | None) -> list[EdgeSpec]:
        """Edges between nodes of one level."""
        return [e for e in self.edges if self.owner[e.source] == owner and self.owner[e.target] == owner]

    def loop_entries(self, loop_id: str) -> set[str]:
        """Body nodes fed directly by a loop's "loop" handle."""
        return {e.target for e in self.edges if e.source == loop_id and e.handle == LOOP_BODY_HANDLE}


def prepare_graph(nodes: Any, edges: Any) -> Graph:
    """Check the structure the engine relies on and build a `Graph`; raises `GraphError`."""
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise GraphError("nodes and edges must be lists")
    specs: list[NodeSpec] = []
    by_id: dict[str, NodeSpec] = {}
    for raw in nodes:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("type"), str):
            raise GraphError("every node needs a string id and type")
        if raw["id"] in by_id:
            raise GraphError(f"duplicate node id '{raw['id']}'")
        spec = node_spec(raw)
        specs.append(spec)
        by_id[spec.id] = spec
    edge_specs: list[EdgeSpec] = []
    for raw in edges:
        if not isinstance(raw, Mapping):
            raise GraphError("every edge must be an object")
        source, target, handle = raw.get("source"), raw.get("target"), raw.get("source_handle")
        if source not in by_id or target not in by_id:
            raise GraphError(f"edge {source!r} -> {target!r} names a missing node")
        if handle is not None and not isinstance(handle, str):
            raise GraphError(f"edge {source!r} -> {target!r} has a non-string source_handle")
        edge_specs.append(EdgeSpec(source, target, handle))
    cycle = find_cycle(by_id, ((e.source, e.target) for e in edge_specs))
    if cycle:
        raise GraphError("the graph has a cycle: " + " -> ".join(cycle))
    bodies = loop_bodies([s.id for s in specs if s.type == "loop"], edge_specs)
    violations = loop_body_violations(bodies, edge_specs)
    if violations:
        raise GraphError(violations[0][1])
    owner: dict[str, str | None] = {}
    for spec in specs:
        holders = [loop_id for loop_id, body in bodies.items() if spec.id in body]
        # Bodies nest (validation guarantees it), so the innermost holder has the smallest body.
        owner[spec.id] = min(holders, key=lambda loop_id: len(bodies[loop_id])) if holders else None
    return Graph(nodes=specs, edges=edge_specs, by_id=by_id, bodies=bodies, owner=owner)
