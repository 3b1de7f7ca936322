"""The engine's public value types: cancel tokens, node calls, errors, limits and results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .graph import NodeSpec


class NodeError(Exception):
    """Raised by a node runner: the node failed with `message` (shown to the user as is).

    `retryable=False` skips the remaining retry attempts (for failures that cannot get better).
    """

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class NodeCancelled(Exception):
    """Raised by a node runner (or the engine) when the node stopped because it was cancelled."""


class CancelToken:
    """A cancellation flag shared by threads; children are cancelled with their parent."""

    def __init__(self, parent: CancelToken | None = None):
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._children: set[CancelToken] = set()
        self._callbacks: list[Callable[[], None]] = []
        self._parent = parent
        if parent is not None:
            parent._adopt(self)

    def _adopt(self, child: CancelToken) -> None:
        with self._lock:
            if not self._event.is_set():
                self._children.add(child)
                return
        child.cancel()

    def child(self) -> CancelToken:
        """A new token cancelled when this one is (but cancelling it leaves this one alone)."""
        return CancelToken(self)

    def detach(self) -> None:
        """Stop following the parent (call when the child is no longer used, so parents do not grow)."""
        if self._parent is not None:
            with self._parent._lock:
                self._parent._children.discard(self)

    def cancel(self) -> None:
        """Cancel this token, its children, and run its callbacks (once)."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            children, self._children = list(self._children), set()
            callbacks, self._callbacks = self._callbacks, []
        for child in children:
            child.cancel()
        for callback in callbacks:
            callback()

    def is_cancelled(self) -> bool:
        """Whether `cancel()` was called on this token or an ancestor."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, returning early (True) when cancelled; False after a full sleep."""
        return self._event.wait(max(0.0, seconds))

    def add_callback(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on cancellation (now if already cancelled); returns a function removing it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return remove
        callback()
        return lambda: None


@dataclass(frozen=True)
class EngineLimits:
    """Engine bounds; defaults equal the WORKFLOW_* settings' defaults."""

    max_parallel: int = 4
    max_delay_seconds: float = 300
    max_loop_iterations: int = 1000
    # A node output bigger than this (as JSON) fails the node: outputs are stored and sent to clients.
    max_output_bytes: int = 4 * 1024 * 1024
    # Exponential retry backoff never waits longer than this per attempt.
    max_backoff_ms: int = 60_000
    # After cancellation, how long a running node may take to notice before it is abandoned.
    cancel_grace_seconds: float = 5.0
    # Applied to nodes without their own `timeout_ms` (None: no timeout).
    default_timeout_ms: int | None = None

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> EngineLimits:
        """Limits from any object with WORKFLOW_* attributes (e.g. `django.conf.settings`)."""
        values = {
            "max_parallel": getattr(settings, "WORKFLOW_MAX_PARALLEL_NODES", cls.max_parallel),
            "max_delay_seconds": getattr(settings, "WORKFLOW_MAX_DELAY_SECONDS", cls.max_delay_seconds),
            "max_loop_iterations": getattr(settings, "WORKFLOW_MAX_LOOP_ITERATIONS", cls.max_loop_iterations),
        }
        values.update(overrides)
        return cls(**values)


class NodeCall:
    """What a node runner receives: the node, a template renderer, the cancel token and the caller's context."""

    def __init__(
        self,
        *,
        node: NodeSpec,
        attempt: int,
        cancel_token: CancelToken,
        context: Any,
        execution_input: Any,
        prev: Any,
        template_context: Mapping[str, Any],
        render: Callable[[Any, Mapping[str, Any]], Any],
        deadline: float | None,
        loop: Mapping[str, Any] | None = None,
    ):
        self.node = node
        self.attempt = attempt
        self.cancel_token = cancel_token
        self.context = context
        self.input = execution_input
        self.prev = prev
        self.deadline = deadline
        self.loop = loop
        self._template_context = template_context
        self._render = render
        self._gate: Any = None

    @property
    def data(self) -> Mapping[str, Any]:
        """The node's raw (unrendered) `data`."""
        return self.node.data

    def render(self, value: Any) -> Any:
        """Render the templates inside `value` with this node's context; raises `TemplateError`."""
        return self._render(value, self._template_context)

    def time_remaining(self) -> float | None:
        """Seconds left before this attempt times out (None without a timeout)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


Runner = Callable[[NodeCall], Any]


@dataclass
class NodeResult:
    """The final state of one node (for loop bodies: of the last iteration)."""

    node_id: str
    node_type: str
    status: str
    output: Any = None
    error: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The `node_results` entry."""
        return asdict(self)


@dataclass
class ExecutionResult:
    """What `run()` returns."""

    status: str
    output: Any
    error: str | None
    duration_ms: int
    started_at: str
    completed_at: str
    node_results: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of the result."""
        return asdict(self)
