"""The workflow engine: plain Python, no Django, HTTP, Celery or Channels (DESIGN.md).

It takes a graph (nodes, edges), an execution input and runners for the side-effect node types
(llm, tool, http_request, agent), runs the graph by CONTRACT §4 and reports events through `emit`.

Semantics beyond CONTRACT §4:

- `prev` is the output of the single *active* parent (so a join after if/else sees the branch that
  ran); None with several active parents or none. Inside a loop body, the entry nodes' `prev` is the item.
- A failed node with `on_error: continue` outputs `{"error": message}` and feeds its children, except a
  condition/switch, which then takes no branch (its children are skipped). A failed loop with `continue`
  still runs its "done" branch.
- After a fatal failure nothing new starts; nodes already running finish and keep their status; the
  rest are `skipped`. The execution `error` is `Node '<id>' failed: <message>`, its output None.
- Cancellation: nothing new starts; running runners see their token cancelled and get
  `cancel_grace_seconds` to stop (a runner that returns a value in time is `completed`, anything else
  is `cancelled`, and a runner still busy is abandoned); pending nodes are `cancelled`, with one
  node_complete each. A cancel observed before the end makes the execution `cancelled`.
- Retries apply to every failure except `NodeError(retryable=False)`, template errors and bad outputs;
  the wait is `backoff_ms * 2**(attempt-1)`, capped by `max_backoff_ms`, and cancellable. `timeout_ms`
  bounds each attempt (a loop's timeout covers the whole loop); a timed-out runner is abandoned with its
  token cancelled. `attempts` counts attempts started.
- Loops run item after item and, inside an item, node after node (deterministic; no parallelism in a
  body). `items` beyond min(max_iterations, limit) are ignored. Each item's result is the output of the
  body sink that finished last (None if every sink was skipped; the item itself if the body is empty).
  During an iteration `nodes.<loop_id>` is `{item, index}`; `item`/`index` are the innermost loop's.
  After the loop, body nodes can be read through `nodes.<id>` with their last iteration's output, and
  `node_results` holds their last iteration. Body node events carry `loop_id` and `iteration`.
- The execution output is the value of the last `output` node (outside loop bodies) that completed,
  else the output of the last sink (completed or failed-with-continue) to finish, else None.
- Outputs must be JSON (no NaN) and at most `max_output_bytes`; they are copied on the way in, and runners
  get copies of `prev` and `input`, so no node can change another's data.
- `emit` is only ever called from the thread that called `run()`, in causal order; its exceptions are
  logged and ignored.
"""

from .compare import OPERATORS, UNARY_OPERATORS, compare
from .core import BUILTIN_TYPES, WorkflowEngine, run_workflow
from .graph import GraphError, NodeSpec, prepare_graph
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

INJECTED_TYPES = frozenset({"llm", "tool", "http_request", "agent"})

__all__ = [
    "BUILTIN_TYPES",
    "INJECTED_TYPES",
    "OPERATORS",
    "UNARY_OPERATORS",
    "CancelToken",
    "EngineLimits",
    "ExecutionResult",
    "GraphError",
    "NodeCall",
    "NodeCancelled",
    "NodeError",
    "NodeResult",
    "NodeSpec",
    "Runner",
    "WorkflowEngine",
    "compare",
    "prepare_graph",
    "run_workflow",
]
