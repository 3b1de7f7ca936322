"""The scheduler: runs a prepared graph, node by node, and reports events (CONTRACT §4).

Threads: `run()`'s caller thread schedules the top level and is the only thread that calls `emit`.
Top-level nodes run in a pool of `max_parallel` threads; each attempt of a node runs in its own
daemon thread so that a timeout or a cancellation can abandon a runner that does not return. A loop
runs its body item by item and node by node inside its own attempt thread. Everything a worker wants
to report goes through one queue drained by the caller thread, which keeps events in a causal order.

A `_Gate` guards every report: when an attempt is abandoned its gate closes, so whatever the stray
thread does later (a loop body still finishing, a late result) never reaches events or results.
"""

from __future__ import annotations

import copy
import heapq
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from workflows.templates import TemplateError, render_value

from .builtins import BUILTIN_RUNNERS
from .graph import BRANCH_TYPES, EdgeSpec, Graph, NodeSpec, prepare_graph, topological_order
from .types import (
    CancelToken,
    EngineLimits,
    ExecutionResult,
    NodeCall,
    NodeCancelled,
    NodeError,
    NodeResult,
    Runner,
)

logger = logging.getLogger("claraverse.workflows.engine")

BUILTIN_TYPES = frozenset({*BUILTIN_RUNNERS, "loop"})
# Built-in types that only compute from their inputs, quickly and without blocking: without a timeout
# their attempts run in the calling thread (a thread per attempt exists to enforce timeouts and to
# abandon a runner on cancellation, neither of which can matter here).
INSTANT_TYPES = frozenset({"trigger", "condition", "switch", "transform", "output"})
_MISSING = object()
_LOOP_EDGE = "\x00loop"  # stands for the edge from a loop node into its body when counting parents
_MAX_ERROR_CHARS = 2000

Emit = Callable[[dict[str, Any]], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _elapsed_ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


# In a Python string from JSON, a surrogate code point is always a lone one (pairs were combined).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _storable(encoded: str) -> str:
    """A node output (as JSON) that a database can store: NUL characters (which PostgreSQL refuses in text
    and jsonb) become U+FFFD, and so do lone surrogates (which are not UTF-8), e.g. from a remote response."""
    if "\\u0000" in encoded:
        encoded = json.dumps(_without_nul(json.loads(encoded)), allow_nan=False, ensure_ascii=False)
    return _LONE_SURROGATE.sub("\ufffd", encoded)


def _truncate(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 3] + "..."


def _exception_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return _truncate(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class _Gate:
    """Open while the attempt that owns it is still wanted (see the module docstring)."""

    def __init__(self, parent: _Gate | None = None):
        self.parent = parent
        self.closed = False

    def is_open(self) -> bool:
        gate: _Gate | None = self
        while gate is not None:
            if gate.closed:
                return False
            gate = gate.parent
        return True


@dataclass
class _Scope:
    """What the nodes of one level see: outputs so far, and the loop item when inside a body."""

    outputs: dict[str, Any]
    loop_id: str | None = None
    iteration: int | None = None
    item: Any = _MISSING
    entries: frozenset[str] = frozenset()


@dataclass
class _Outcome:
    node_id: str
    status: str
    output: Any = None
    error: str | None = None


@dataclass
class _Attempt:
    kind: str  # "ok", "error" or "cancelled"
    value: Any = None
    retryable: bool = True


@dataclass
class _Run:
    """State shared by every level of one execution."""

    engine: WorkflowEngine
    graph: Graph
    execution_input: Any
    context: Any
    emit: Emit | None
    lock: threading.RLock = field(default_factory=threading.RLock)
    queue: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    results: dict[str, NodeResult] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    root_gate: _Gate = field(default_factory=_Gate)
    next_check: float = 0.0  # monotonic time of the next `cancel_check` poll

    @property
    def limits(self) -> EngineLimits:
        return self.engine.limits

    def post(self, gate: _Gate, event: dict[str, Any], *, result: NodeResult | None = None) -> bool:
        """Queue an event (and record a result) unless the gate is closed."""
        with self.lock:
            if not gate.is_open():
                return False
            if event["type"] == "node_start":
                self.started.add(event["node_id"])
            if result is not None:
                self.results[result.node_id] = result
                self.started.discard(result.node_id)
            self.queue.put(("event", event))
            return True

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand one event to the caller's `emit` (caller thread only)."""
        if self.emit is None:
            return
        try:
            self.emit(copy.deepcopy(event))
        except Exception:
            # A broken listener must not break the execution; the result still carries everything.
            logger.exception("workflow event listener failed on %s", event.get("type"))


class _Level:
    """Schedules one level: the top-level graph, or one iteration of a loop body."""

    def __init__(self, run: _Run, owner: str | None, scope: _Scope, token: CancelToken, gate: _Gate, parallel: bool):
        self.run = run
        self.graph = run.graph
        self.scope = scope
        self.token = token
        self.gate = gate
        self.parallel = parallel
        ids = self.graph.level(owner)
        edges = self.graph.level_edges(owner)
        self.order = topological_order(ids, [(e.source, e.target) for e in edges])
        self.position = {node_id: index for index, node_id in enumerate(self.order)}
        self.incoming: dict[str, list[EdgeSpec]] = {node_id: [] for node_id in ids}
        self.children: dict[str, list[str]] = {node_id: [] for node_id in ids}
        self.has_children: set[str] = set()
        for edge in edges:
            self.incoming[edge.target].append(edge)
            self.children[edge.source].append(edge.target)
            self.has_children.add(edge.source)
        self.status: dict[str, str] = dict.fromkeys(ids, "pending")
        # Readiness is decided incrementally: a pending node is looked at once, when the last of its parents
        # settles (see `_settled`), so scheduling stays linear in the size of the graph.
        self.unsettled_parents: dict[str, int] = {node_id: len(self.incoming[node_id]) for node_id in ids}
        self.undecided: list[tuple[int, str]] = [
            (index, node_id) for index, node_id in enumerate(self.order) if not self.incoming[node_id]
        ]
        self.undecided_ids: set[str] = {node_id for _, node_id in self.undecided}  # what the heap holds
        self.ready: list[tuple[int, str]] = []  # heap by topological position: earlier nodes start first
        self.ready_prev: dict[str, Any] = {}
        self.chosen: dict[str, str | None] = {}
        self.finished: list[str] = []  # nodes with an output, in the order they finished
        self.running = 0
        self.stop_reason: str | None = None  # "failed" or "cancelled", whichever came first
        self.failure: tuple[str, str] | None = None

    # -- decisions -------------------------------------------------------------------------------

    def _edge_active(self, edge: EdgeSpec) -> bool:
        source = self.graph.by_id[edge.source]
        status = self.status[edge.source]
        if status == "completed":
            if source.type in BRANCH_TYPES:
                return edge.handle is not None and edge.handle == self.chosen.get(edge.source)
            return True
        # A failed branch node picked no branch; any other node that failed with on_error=continue
        # still feeds its children (its output is {"error": ...}).
        return status == "failed" and source.on_error == "continue" and source.type not in BRANCH_TYPES

    def _decide(self, node_id: str) -> tuple[str, Any]:
        """("wait", None), ("skip", None) or ("run", prev)."""
        incoming = self.incoming[node_id]
        active: list[str] = []
        for edge in incoming:
            if self.status[edge.source] in ("pending", "running"):
                return "wait", None
            if self._edge_active(edge):
                active.append(edge.source)
        if node_id in self.scope.entries:
            active.append(_LOOP_EDGE)
        if not active and incoming:
            return "skip", None
        sources = set(active)
        if len(sources) != 1:
            return "run", None
        source = sources.pop()
        if source == _LOOP_EDGE:
            return "run", self.scope.item
        return "run", self.scope.outputs.get(source)

    def _advance(self) -> None:
        """Skip what can no longer run (cascading) and queue in `ready` what can start."""
        # Children come after their parents in the topological order, so a skip cascades within this loop,
        # in the same order as a full pass over the graph would take.
        while self.undecided:
            _, node_id = heapq.heappop(self.undecided)
            self.undecided_ids.discard(node_id)
            if self.status[node_id] != "pending" or node_id in self.ready_prev:
                continue
            decision, prev = self._decide(node_id)
            if decision == "skip":
                self._finish_unrun(node_id, "skipped")  # its children become undecided
            elif decision == "run":
                self.ready_prev[node_id] = prev
                heapq.heappush(self.ready, (self.position[node_id], node_id))

    def _next_ready(self) -> tuple[str, Any] | None:
        """The earliest (in topological order) node that can start, taken off the ready queue."""
        if not self.ready:
            return None
        _, node_id = heapq.heappop(self.ready)
        return node_id, self.ready_prev.pop(node_id)

    def _settled(self, node_id: str) -> None:
        """A node got its final status: its children may now be decided."""
        for child in self.children[node_id]:  # once per edge: a parent may have several edges to one child
            self.unsettled_parents[child] -= 1
            if self.unsettled_parents[child] == 0 and child not in self.undecided_ids:
                self.undecided_ids.add(child)
                heapq.heappush(self.undecided, (self.position[child], child))

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def _on_done(self, outcome: _Outcome) -> None:
        node_id = outcome.node_id
        spec = self.graph.by_id[node_id]
        self.status[node_id] = outcome.status
        self._settled(node_id)
        has_output = outcome.status == "completed" or (outcome.status == "failed" and spec.on_error == "continue")
        if has_output:
            self.scope.outputs[node_id] = outcome.output
            self.finished.append(node_id)
            if outcome.status == "completed" and isinstance(outcome.output, Mapping):
                if spec.type == "condition":
                    self.chosen[node_id] = "true" if outcome.output.get("result") is True else "false"
                elif spec.type == "switch":
                    branch = outcome.output.get("branch")
                    self.chosen[node_id] = branch if isinstance(branch, str) else None
            if spec.type == "loop":
                self._expose_body_outputs(node_id)
        elif outcome.status == "failed":
            if self.failure is None:
                self.failure = (node_id, outcome.error or "failed")
            self._stop("failed")
        elif outcome.status == "cancelled":
            self._stop("cancelled")

    def _expose_body_outputs(self, loop_id: str) -> None:
        # After a loop, the nodes of its body can be read with the outputs of their last iteration.
        with self.run.lock:
            for body_id in self.graph.bodies[loop_id]:
                result = self.run.results.get(body_id)
                if result is None:
                    continue
                continued = result.status == "failed" and self.graph.by_id[body_id].on_error == "continue"
                if result.status == "completed" or continued:
                    self.scope.outputs[body_id] = result.output

    # -- execution -------------------------------------------------------------------------------

    def execute(self) -> None:
        """Run the level to the end (every node of it gets a final status)."""
        if self.parallel:
            self._execute_parallel()
        else:
            self._execute_serial()
        for node_id in self.order:
            if self.status[node_id] == "pending":
                self._finish_unrun(node_id, "cancelled" if self.stop_reason == "cancelled" else "skipped")

    def _execute_serial(self) -> None:
        while True:
            if self.token.is_cancelled():
                self._stop("cancelled")
            if self.stop_reason:
                return
            self._advance()
            next_node = self._next_ready()
            if next_node is None:
                return
            node_id, prev = next_node
            self.status[node_id] = "running"
            self._on_done(self._run_node(node_id, prev, self._template_context(prev)))

    def _execute_parallel(self) -> None:
        limit = max(1, self.run.limits.max_parallel)
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="workflow-node")
        try:
            while True:
                if self.token.is_cancelled():
                    self._stop("cancelled")
                if not self.stop_reason:
                    self._advance()
                    while self.running < limit and (next_node := self._next_ready()) is not None:
                        node_id, prev = next_node
                        self.status[node_id] = "running"
                        self.running += 1
                        # The snapshot is taken here, in the scheduling thread that owns `scope.outputs`.
                        pool.submit(self._pool_task, node_id, prev, self._template_context(prev))
                if self.running == 0:
                    return
                self._pump()
        finally:
            pool.shutdown(wait=False)

    def _pool_task(self, node_id: str, prev: Any, template_context: dict[str, Any]) -> None:
        try:
            outcome = self._run_node(node_id, prev, template_context)
        except BaseException as exc:  # the engine itself broke: fail the node rather than hang the run
            logger.exception("workflow engine error in node %s", node_id)
            outcome = _Outcome(node_id, "failed", error=f"Internal engine error ({type(exc).__name__}).")
        self.run.queue.put(("done", outcome))

    def _pump(self) -> None:
        """Deliver queued events until one node finishes, the execution is cancelled, or a poll is due."""
        engine = self.run.engine
        check = engine.cancel_check
        while True:
            timeout = None
            if check is not None:
                # Polls run on a clock, not on idleness: a busy stream of events must not starve them.
                now = time.monotonic()
                if now >= self.run.next_check:
                    self.run.next_check = now + engine.cancel_check_interval
                    self._poll(check)
                    return
                timeout = self.run.next_check - now
            try:
                kind, payload = self.run.queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if kind == "event":
                self.run.deliver(payload)
            elif kind == "done":
                self.running -= 1
                self._on_done(payload)
                return
            else:  # "wake": the token was cancelled
                return

    def _poll(self, check: Callable[[], bool]) -> None:
        if self.token.is_cancelled():
            return
        try:
            if check():
                self.token.cancel()
        except Exception:
            logger.exception("workflow cancel check failed")

    # -- one node --------------------------------------------------------------------------------

    def _event(self, kind: str, node_id: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "node_id": node_id, "node_type": self.graph.by_id[node_id].type, **fields}
        owner = self.graph.owner[node_id]
        if owner is not None:
            # Loop body nodes report once per iteration; `iteration` is None when they never ran.
            event["loop_id"] = owner
            event["iteration"] = self.scope.iteration if self.scope.loop_id == owner else None
        return event

    def _complete(self, result: NodeResult) -> None:
        fields = result.as_dict()
        fields.pop("node_id")
        fields.pop("node_type")
        self.run.post(self.gate, self._event("node_complete", result.node_id, **fields), result=result)

    def _finish_unrun(self, node_id: str, status: str) -> None:
        """Give a node that never started its final status ("skipped" or "cancelled"); scheduling thread."""
        self.status[node_id] = status
        self._settled(node_id)
        self._report_unrun(node_id, status)

    def _report_unrun(self, node_id: str, status: str) -> None:
        spec = self.graph.by_id[node_id]
        if spec.type == "loop":
            # Its body never runs either; stale results of an earlier iteration of an outer loop go too.
            self._finish_body(node_id, status, replace=True)
        self._complete(NodeResult(node_id, spec.type, status, completed_at=_now()))

    def _finish_body(self, loop_id: str, status: str, *, replace: bool) -> None:
        """Settle the nodes of a loop body left without a result by the loop's last run (or all of them)."""
        body = self.graph.bodies[loop_id]
        with self.run.lock:
            pending = [
                spec for spec in self.graph.nodes if spec.id in body and (replace or spec.id not in self.run.results)
            ]
            started = set(self.run.started)
        now = _now()
        for spec in pending:
            # A node abandoned mid-run (its loop timed out or was cancelled) ends cancelled.
            final = "cancelled" if spec.id in started else status
            self._complete(NodeResult(spec.id, spec.type, final, completed_at=now))

    def _runner_for(self, spec: NodeSpec) -> Callable[[NodeCall], Any]:
        if spec.type == "loop":
            return self._run_loop
        builtin = BUILTIN_RUNNERS.get(spec.type)
        if builtin is not None:
            limits = self.run.limits
            return lambda call: builtin(call, limits)
        runner = self.run.engine.runners.get(spec.type)
        if runner is not None:
            return runner

        def missing(call: NodeCall) -> Any:
            raise NodeError(f"No runner is available for node type '{spec.type}'.", retryable=False)

        return missing

    def _template_context(self, prev: Any) -> dict[str, Any]:
        context = {"input": self.run.execution_input, "nodes": dict(self.scope.outputs), "prev": prev}
        if self.scope.item is not _MISSING:
            context["item"] = self.scope.item
            context["index"] = self.scope.iteration
        return context

    def _run_node(self, node_id: str, prev: Any, template_context: dict[str, Any]) -> _Outcome:
        """Run one node with its retries (any thread); reports its events, returns its outcome."""
        spec = self.graph.by_id[node_id]
        if self.token.is_cancelled():
            self._report_unrun(node_id, "cancelled")
            return _Outcome(node_id, "cancelled")
        started_at, began = _now(), time.monotonic()
        self.run.post(self.gate, self._event("node_start", node_id, started_at=started_at))
        runner = self._runner_for(spec)
        status, output, error, attempts = "failed", None, None, 0
        for attempt in range(1, spec.max_attempts + 1):
            attempts = attempt
            result = self._attempt(spec, attempt, runner, template_context, prev)
            if result.kind == "ok":
                status, output, error = "completed", result.value, None
                break
            if result.kind == "cancelled":
                status, error = "cancelled", None
                break
            error = result.value
            if not result.retryable or attempt == spec.max_attempts:
                status = "failed"
                break
            backoff_ms = min(spec.backoff_ms * 2 ** (attempt - 1), self.run.limits.max_backoff_ms)
            if self.token.wait(backoff_ms / 1000):
                status, error = "cancelled", None
                break
        if status == "failed" and spec.on_error == "continue":
            output = {"error": error}
        if spec.type == "loop":
            self._finish_body(node_id, "cancelled" if status == "cancelled" else "skipped", replace=False)
        node_result = NodeResult(
            node_id=node_id,
            node_type=spec.type,
            status=status,
            output=output,
            error=error,
            started_at=started_at,
            completed_at=_now(),
            duration_ms=_elapsed_ms(began),
            attempts=attempts,
        )
        if status == "failed":
            self.run.post(self.gate, self._event("node_error", node_id, error=error, attempts=attempts))
        self._complete(node_result)
        return _Outcome(node_id, status, output, error)

    def _attempt(
        self, spec: NodeSpec, attempt: int, runner: Runner, template_context: dict[str, Any], prev: Any
    ) -> _Attempt:
        """One attempt in its own thread, bounded by the timeout and abandoned on cancellation."""
        timeout_ms = spec.timeout_ms if spec.timeout_ms is not None else self.run.limits.default_timeout_ms
        token = self.token.child()
        gate = _Gate(self.gate)
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        call = NodeCall(
            node=spec,
            attempt=attempt,
            cancel_token=token,
            context=self.run.context,
            execution_input=copy.deepcopy(self.run.execution_input),
            prev=copy.deepcopy(prev),
            template_context=template_context,
            render=render_value,
            deadline=deadline,
            loop=None
            if self.scope.loop_id is None
            else {"loop_id": self.scope.loop_id, "index": self.scope.iteration, "item": copy.deepcopy(self.scope.item)},
        )
        call._gate = gate  # the loop runner schedules its body behind the gate of its attempt
        box: dict[str, Any] = {}
        if spec.type in INSTANT_TYPES and deadline is None:
            try:
                try:
                    box["value"] = runner(call)
                except Exception as exc:
                    box["error"] = exc
                return self._settle(box, token)
            finally:
                token.detach()
        done, wake = threading.Event(), threading.Event()
        cleanup = self.run.engine.thread_cleanup

        def target() -> None:
            try:
                box["value"] = runner(call)
            except BaseException as exc:
                box["error"] = exc
            finally:
                if cleanup is not None:
                    try:
                        cleanup()
                    except Exception:
                        logger.exception("workflow thread cleanup failed")
                done.set()
                wake.set()

        remove_callback = token.add_callback(wake.set)
        thread = threading.Thread(target=target, name=f"workflow-{spec.type}-{spec.id}", daemon=True)
        thread.start()
        try:
            wake.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if done.is_set():
                return self._settle(box, token)
            if token.is_cancelled():
                # Cancelled from above: give the runner a moment to notice and stop (or finish) cleanly.
                done.wait(self.run.limits.cancel_grace_seconds)
                if done.is_set():
                    return self._settle(box, token)
                self._abandon(gate)
                return _Attempt("cancelled")
            token.cancel()
            self._abandon(gate)
            return _Attempt("error", f"Timed out after {timeout_ms} ms.")
        finally:
            remove_callback()
            token.detach()

    def _abandon(self, gate: _Gate) -> None:
        with self.run.lock:
            gate.closed = True

    def _settle(self, box: dict[str, Any], token: CancelToken) -> _Attempt:
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, NodeCancelled) or token.is_cancelled():
                return _Attempt("cancelled")
            if isinstance(exc, NodeError):
                return _Attempt("error", _truncate(exc.message or "Node failed."), exc.retryable)
            if isinstance(exc, TemplateError):
                return _Attempt("error", _truncate(str(exc)), retryable=False)
            logger.warning("workflow node runner raised", exc_info=exc)
            return _Attempt("error", _exception_message(exc))
        try:
            encoded = json.dumps(box["value"], allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return _Attempt("error", _truncate(f"Node output is not JSON-serialisable: {exc}"), retryable=False)
        if "\\u0000" in encoded or not encoded.isascii():
            encoded = _storable(encoded)
        limit = self.run.limits.max_output_bytes
        if len(encoded) > limit and len(encoded.encode()) > limit:
            return _Attempt("error", f"Node output is larger than {limit} bytes.", retryable=False)
        return _Attempt("ok", json.loads(encoded))

    # -- loops -----------------------------------------------------------------------------------

    def _run_loop(self, call: NodeCall) -> Any:
        spec = call.node
        gate: _Gate = call._gate
        with self.run.lock:
            if gate.is_open():
                for body_id in self.graph.bodies[spec.id]:
                    self.run.results.pop(body_id, None)
        items = call.render(spec.data.get("items"))
        if not isinstance(items, list):
            kind = "null" if items is None else type(items).__name__
            raise NodeError(f"Loop items must render to a list, got {kind}.", retryable=False)
        requested = spec.data.get("max_iterations", 100)
        if isinstance(requested, bool) or not isinstance(requested, int | float):
            requested = 100
        cap = max(0, min(int(requested), self.run.limits.max_loop_iterations))
        entries = frozenset(self.graph.loop_entries(spec.id))
        has_body = bool(self.graph.bodies[spec.id])
        outer = call._template_context["nodes"]
        results = []
        for index, item in enumerate(items[:cap]):
            if call.cancel_token.is_cancelled():
                raise NodeCancelled()
            outputs = dict(outer)
            outputs[spec.id] = {"item": item, "index": index}
            scope = _Scope(outputs=outputs, loop_id=spec.id, iteration=index, item=item, entries=entries)
            level = _Level(self.run, spec.id, scope, call.cancel_token, gate, parallel=False)
            level.execute()
            if level.stop_reason == "cancelled":
                raise NodeCancelled()
            if level.stop_reason == "failed" and level.failure is not None:
                failed_id, message = level.failure
                raise NodeError(f"Iteration {index} failed at node '{failed_id}': {message}")
            results.append(level.sink_output() if has_body else item)
        return {"items": results}

    def sink_output(self) -> Any:
        """The output of the last sink of this level to finish (None when every sink was skipped)."""
        for node_id in reversed(self.finished):
            if node_id not in self.has_children:
                return self.scope.outputs.get(node_id)
        return None

    def execution_output(self) -> Any:
        """The last completed `output` node's value, else the last finished sink's output."""
        for node_id in reversed(self.finished):
            if self.graph.by_id[node_id].type == "output" and self.status[node_id] == "completed":
                return self.scope.outputs.get(node_id)
        return self.sink_output()


class WorkflowEngine:
    """Runs workflow graphs with injected runners for the side-effect node types."""

    def __init__(
        self,
        *,
        runners: Mapping[str, Runner] | None = None,
        limits: EngineLimits | None = None,
        thread_cleanup: Callable[[], None] | None = None,
        cancel_check: Callable[[], bool] | None = None,
        cancel_check_interval: float = 1.0,
    ):
        runners = dict(runners or {})
        overridden = BUILTIN_TYPES & set(runners)
        if overridden:
            raise ValueError(f"built-in node types cannot be replaced: {sorted(overridden)}")
        self.runners = runners
        self.limits = limits or EngineLimits()
        self.thread_cleanup = thread_cleanup
        self.cancel_check = cancel_check
        self.cancel_check_interval = cancel_check_interval

    def run(
        self,
        nodes: Any,
        edges: Any,
        execution_input: Any = None,
        *,
        emit: Emit | None = None,
        cancel_token: CancelToken | None = None,
        context: Any = None,
    ) -> ExecutionResult:
        """Run the graph to the end and return the result; raises `GraphError` if it cannot start."""
        graph = prepare_graph(nodes, edges)
        try:
            execution_input = json.loads(json.dumps(execution_input, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the execution input is not JSON: {exc}") from None
        token = cancel_token or CancelToken()
        run = _Run(engine=self, graph=graph, execution_input=execution_input, context=context, emit=emit)
        started_at, began = _now(), time.monotonic()
        run.next_check = began + self.cancel_check_interval
        level = _Level(run, None, _Scope(outputs={}), token, run.root_gate, parallel=True)
        remove_callback = token.add_callback(lambda: run.queue.put(("wake", None)))
        try:
            level.execute()
        finally:
            remove_callback()
            with run.lock:
                run.root_gate.closed = True
        self._drain(run)
        if level.stop_reason == "failed" and level.failure is not None:
            failed_id, message = level.failure
            status, output, error = "failed", None, f"Node '{failed_id}' failed: {message}"
        elif level.stop_reason == "cancelled":
            status, output, error = "cancelled", None, "Execution cancelled."
        else:
            status, output, error = "completed", level.execution_output(), None
        duration_ms = _elapsed_ms(began)
        result = ExecutionResult(
            status=status,
            output=output,
            error=error,
            duration_ms=duration_ms,
            started_at=started_at,
            completed_at=_now(),
            node_results=[self._node_result(run, spec).as_dict() for spec in graph.nodes],
        )
        run.deliver(
            {
                "type": "execution_complete",
                "status": status,
                "output": output,
                "error": error,
                "duration_ms": duration_ms,
            }
        )
        return result

    @staticmethod
    def _drain(run: _Run) -> None:
        while True:
            try:
                kind, payload = run.queue.get_nowait()
            except queue.Empty:
                return
            if kind == "event":
                run.deliver(payload)

    @staticmethod
    def _node_result(run: _Run, spec: NodeSpec) -> NodeResult:
        result = run.results.get(spec.id)
        if result is None:  # pragma: no cover - every level settles its nodes; this is a safety net
            return NodeResult(spec.id, spec.type, "skipped")
        return result


def run_workflow(
    nodes: Any,
    edges: Any,
    execution_input: Any = None,
    *,
    runners: Mapping[str, Runner] | None = None,
    emit: Emit | None = None,
    cancel_token: CancelToken | None = None,
    context: Any = None,
    limits: EngineLimits | None = None,
) -> ExecutionResult:
    """Run a workflow once with a throwaway `WorkflowEngine`."""
    engine = WorkflowEngine(runners=runners, limits=limits)
    return engine.run(nodes, edges, execution_input, emit=emit, cancel_token=cancel_token, context=context)
