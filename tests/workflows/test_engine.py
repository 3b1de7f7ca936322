"""The workflow engine, with fake runners for the injected node types (no Django, no network)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from workflows.engine import (
    CancelToken,
    EngineLimits,
    GraphError,
    NodeCall,
    NodeError,
    WorkflowEngine,
    compare,
    run_workflow,
)

# -- helpers ---------------------------------------------------------------------------------------


def node(node_id, node_type, data=None, **extra):
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data or {}, **extra}


def edge(source, target, handle=None):
    result = {"source": source, "target": target}
    if handle is not None:
        result["source_handle"] = handle
    return result


@dataclass
class Fake:
    """A fake side-effect runner: records calls, renders `data.prompt`, can sleep and fail."""

    sleep: float = 0.0
    fail_times: int = 0
    error: Exception | None = None
    output: object = None
    calls: list[NodeCall] = field(default_factory=list)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, call: NodeCall):
        start = time.monotonic()
        with self.lock:
            self.calls.append(call)
        if self.sleep and call.cancel_token.wait(self.sleep):
            with self.lock:
                self.cancelled.append(call.node.id)
            raise NodeError("stopped")
        self.spans[call.node.id] = (start, time.monotonic())
        if self.error is not None:
            raise self.error
        if call.attempt <= self.fail_times:
            raise NodeError(f"attempt {call.attempt} failed")
        if self.output is not None:
            return self.output
        return {"text": call.render(call.data.get("prompt", "")), "attempt": call.attempt}

    def ids(self):
        return [call.node.id for call in self.calls]


def execute(nodes, edges, execution_input=None, *, runners=None, limits=None, token=None, context=None, **engine_kw):
    events: list[dict] = []
    engine = WorkflowEngine(runners=runners or {"llm": Fake()}, limits=limits, **engine_kw)
    result = engine.run(nodes, edges, execution_input, emit=events.append, cancel_token=token, context=context)
    return result, events


def statuses(result):
    return {entry["node_id"]: entry["status"] for entry in result.node_results}


def outputs(result):
    return {entry["node_id"]: entry["output"] for entry in result.node_results}


def of_type(events, kind, node_id=None):
    return [e for e in events if e["type"] == kind and (node_id is None or e["node_id"] == node_id)]


def check_event_order(events, edges):
    """node_start precedes node_complete; a parent's node_complete precedes its child's node_start."""
    position = {}
    for index, event in enumerate(events):
        if event["type"] in ("node_start", "node_complete") and "iteration" not in event:
            position.setdefault((event["type"], event["node_id"]), index)
    for (kind, node_id), index in position.items():
        if kind == "node_start":
            assert position[("node_complete", node_id)] > index
    for link in edges:
        child_start = position.get(("node_start", link["target"]))
        parent_done = position.get(("node_complete", link["source"]))
        if child_start is not None and link.get("source_handle") != "loop":
            assert parent_done is not None and parent_done < child_start
    assert events[-1]["type"] == "execution_complete"
    assert sum(1 for e in events if e["type"] == "execution_complete") == 1


# -- every node type -------------------------------------------------------------------------------


class TestNodeTypes:
    def test_trigger_transform_output(self):
        nodes = [
            node("t", "trigger", {"trigger_type": "api"}),
            node("x", "transform", {"output": {"q": "{{ input.q | upper }}", "n": "{{ input.n * 2 }}", "keep": 1}}),
            node("o", "output", {"value": {"shaped": "{{ nodes.x }}", "prev": "{{ prev.q }}"}}),
        ]
        edges = [edge("t", "x"), edge("x", "o")]
        result, events = execute(nodes, edges, {"q": "hi", "n": 2})
        assert result.status == "completed" and result.error is None
        assert outputs(result)["t"] == {"q": "hi", "n": 2}
        assert outputs(result)["x"] == {"q": "HI", "n": 4, "keep": 1}
        assert result.output == {"shaped": {"q": "HI", "n": 4, "keep": 1}, "prev": "HI"}
        check_event_order(events, edges)

    def test_output_without_value_passes_its_input(self):
        result, _ = execute([node("t", "trigger"), node("o", "output")], [edge("t", "o")], {"a": 1})
        assert result.output == {"a": 1}

    def test_injected_runners_get_a_node_call(self):
        llm, tool, http, agent = Fake(), Fake(output={"result": 42}), Fake(output={"status": 200}), Fake(output="sub")
        nodes = [
            node("t", "trigger"),
            node("l", "llm", {"model": "m", "prompt": "Q: {{ input.q }}"}),
            node("tl", "tool", {"tool": "calculate_math", "arguments": {"expression": "{{ nodes.l.text }}"}}),
            node("h", "http_request", {"method": "GET", "url": "https://x/{{ prev.result }}"}),
            node("a", "agent", {"agent_id": "agent_x", "input": "{{ nodes.h.status }}"}),
        ]
        edges = [edge("t", "l"), edge("l", "tl"), edge("tl", "h"), edge("h", "a")]
        runners = {"llm": llm, "tool": tool, "http_request": http, "agent": agent}
        result, _ = execute(nodes, edges, {"q": "why"}, runners=runners, context={"user": "u1", "depth": 0})
        assert result.status == "completed" and result.output == "sub"
        assert outputs(result)["l"] == {"text": "Q: why", "attempt": 1}
        tool_call = tool.calls[0]
        assert tool_call.render(tool_call.data["arguments"]) == {"expression": "Q: why"}
        assert http.calls[0].render(http.calls[0].data["url"]) == "https://x/42"
        assert agent.calls[0].render(agent.calls[0].data["input"]) == 200
        call = llm.calls[0]
        assert call.context == {"user": "u1", "depth": 0} and call.attempt == 1
        assert call.node.id == "l" and call.node.type == "llm" and call.data["prompt"] == "Q: {{ input.q }}"
        assert call.prev == {"q": "why"} and call.input == {"q": "why"} and call.loop is None
        assert call.time_remaining() is None and not call.cancel_token.is_cancelled()

    def test_prev_is_none_with_several_parents(self):
        seen = Fake()
        nodes = [node("t", "trigger"), node("a", "transform", {"output": 1}), node("b", "transform", {"output": 2})]
        nodes.append(node("j", "llm", {"prompt": "{{ nodes.a + nodes.b }}"}))
        result, _ = execute(
            nodes, [edge("t", "a"), edge("t", "b"), edge("a", "j"), edge("b", "j")], runners={"llm": seen}
        )
        assert seen.calls[0].prev is None and outputs(result)["j"]["text"] == 3

    def test_missing_runner_fails_the_node(self):
        result, _ = execute([node("h", "http_request", {"method": "GET", "url": "x"})], [], runners={})
        assert result.status == "failed"
        assert result.node_results[0]["error"] == "No runner is available for node type 'http_request'."

    def test_builtins_cannot_be_replaced(self):
        with pytest.raises(ValueError, match="condition"):
            WorkflowEngine(runners={"condition": Fake()})

    def test_empty_workflow(self):
        result, events = execute([], [])
        assert (result.status, result.output, result.node_results) == ("completed", None, [])
        assert [e["type"] for e in events] == ["execution_complete"]


# -- branching -------------------------------------------------------------------------------------


def if_else(left, operator, right):
    nodes = [
        node("t", "trigger"),
        node("c", "condition", {"left": left, "operator": operator, "right": right}),
        node("yes", "transform", {"output": "yes"}),
        node("yes2", "transform", {"output": "{{ prev }}!"}),
        node("no", "transform", {"output": "no"}),
        node("join", "transform", {"output": "{{ prev }} ({{ nodes.yes2 or nodes.no }})"}),
    ]
    edges = [
        edge("t", "c"),
        edge("c", "yes", "true"),
        edge("yes", "yes2"),
        edge("c", "no", "false"),
        edge("yes2", "join"),
        edge("no", "join"),
    ]
    return nodes, edges


class TestBranching:
    def test_condition_true_skips_false_branch_and_joins(self):
        nodes, edges = if_else("{{ input.n }}", "gt", "5")
        result, events = execute(nodes, edges, {"n": 10})
        assert statuses(result) == {
            "t": "completed",
            "c": "completed",
            "yes": "completed",
            "yes2": "completed",
            "no": "skipped",
            "join": "completed",
        }
        assert outputs(result)["c"] == {"result": True}
        # The join's prev is its single *active* parent.
        assert result.output == "yes! (yes!)"
        assert of_type(events, "node_start", "no") == []
        [skip] = of_type(events, "node_complete", "no")
        assert skip["status"] == "skipped" and skip["output"] is None and skip["attempts"] == 0
        check_event_order(events, edges)

    def test_condition_false_skip_propagates(self):
        nodes, edges = if_else("{{ input.n }}", "gt", "5")
        result, events = execute(nodes, edges, {"n": 3})
        assert statuses(result)["yes"] == "skipped" and statuses(result)["yes2"] == "skipped"
        assert statuses(result)["no"] == "completed" and result.output == "no (no)"
        assert of_type(events, "node_start", "yes2") == []
        assert [e["status"] for e in of_type(events, "node_complete", "yes2")] == ["skipped"]

    def test_everything_after_an_untaken_branch_is_skipped(self):
        nodes = [
            node("c", "condition", {"left": 1, "operator": "eq", "right": 2}),
            node("a", "transform", {"output": 1}),
            node("b", "transform", {"output": 2}),
        ]
        result, _ = execute(nodes, [edge("c", "a", "true"), edge("a", "b")])
        assert statuses(result) == {"c": "completed", "a": "skipped", "b": "skipped"}
        # The only sink never ran, so there is no output.
        assert result.status == "completed" and result.output is None

    @pytest.mark.parametrize(
        ("value", "branch"),
        [("apple", "fruit"), ("10", "big"), (10.0, "big"), ("9", "default"), ("", "empty"), (None, "empty")],
    )
    def test_switch(self, value, branch):
        cases = [
            {"label": "empty", "operator": "is_empty"},
            {"label": "fruit", "operator": "eq", "right": "apple"},
            {"label": "big", "operator": "gte", "right": "{{ input.threshold }}"},
        ]
        nodes = [node("s", "switch", {"value": "{{ input.value }}", "cases": cases})]
        for label in ("empty", "fruit", "big", "default"):
            nodes.append(node(label, "transform", {"output": label}))
        edges = [edge("s", label, label) for label in ("empty", "fruit", "big", "default")]
        result, _ = execute(nodes, edges, {"value": value, "threshold": 10})
        assert outputs(result)["s"] == {"branch": branch}
        assert {k for k, v in statuses(result).items() if v == "completed"} == {"s", branch}
        assert result.output == branch

    def test_unknown_operator_fails(self):
        result, _ = execute([node("c", "condition", {"left": 1, "operator": "like", "right": 1})], [])
        assert result.status == "failed" and "Unknown operator 'like'" in result.error


class TestCompare:
    @pytest.mark.parametrize(
        ("operator", "left", "right", "expected"),
        [
            ("eq", "10", 10, True),
            ("eq", "10.0", "10", True),
            ("eq", "abc", "ABC", False),
            ("eq", True, "true", True),
            ("eq", None, "", True),
            ("eq", {"b": 1, "a": 2}, {"a": 2, "b": 1}, True),
            ("neq", 1, 2, True),
            ("gt", "10", "9", True),  # numbers, not strings
            ("gt", "b", "a", True),
            ("gt", "10", "9x", False),  # strings: "1" < "9"
            ("gte", 5, "5", True),
            ("lt", " 2 ", 3, True),
            ("lte", 3.5, 3, False),
            ("contains", "hello world", "lo w", True),
            ("contains", [1, 2, 3], "2", True),
            ("contains", {"k": 1}, "k", True),
            ("not_contains", [1, 2], 3, True),
            ("starts_with", "hello", "he", True),
            ("ends_with", "hello", "lo", True),
            ("ends_with", 100, 0, True),
            ("is_empty", "  ", None, True),
            ("is_empty", [], None, True),
            ("is_empty", 0, None, False),
            ("not_empty", {"a": 1}, None, True),
            ("is_true", "Yes", None, True),
            ("is_true", 1, None, True),
            ("is_true", "maybe", None, False),
            ("is_false", "false", None, True),
            ("is_false", None, None, False),
            ("eq", "nan", "nan", True),  # not numbers: compared as text
            ("gt", "inf", "1", True),  # "inf" is text, and "i" > "1"
        ],
    )
    def test_operators(self, operator, left, right, expected):
        assert compare(operator, left, right) is expected


# -- concurrency -----------------------------------------------------------------------------------


def fan_out(count, sleep):
    nodes = [node("t", "trigger")] + [node(f"b{i}", "llm", {"prompt": str(i)}) for i in range(count)]
    edges = [edge("t", f"b{i}") for i in range(count)]
    return nodes, edges, Fake(sleep=sleep)


def max_overlap(spans):
    points = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda p: (p[0], p[1]))
    current = best = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


class TestConcurrency:
    def test_independent_branches_overlap(self):
        nodes, edges, fake = fan_out(3, 0.3)
        began = time.monotonic()
        result, events = execute(nodes, edges, runners={"llm": fake}, limits=EngineLimits(max_parallel=3))
        elapsed = time.monotonic() - began
        assert result.status == "completed"
        assert max_overlap(fake.spans.values()) == 3
        assert elapsed < 0.85  # serial would take 0.9 s
        check_event_order(events, edges)

    def test_parallelism_is_bounded(self):
        nodes, edges, fake = fan_out(4, 0.15)
        result, _ = execute(nodes, edges, runners={"llm": fake}, limits=EngineLimits(max_parallel=2))
        assert result.status == "completed"
        assert max_overlap(fake.spans.values()) == 2

    def test_one_at_a_time(self):
        nodes, edges, fake = fan_out(3, 0.05)
        execute(nodes, edges, runners={"llm": fake}, limits=EngineLimits(max_parallel=1))
        assert max_overlap(fake.spans.values()) == 1
        assert fake.ids() == ["b0", "b1", "b2"]  # ties run in node order

    def test_a_node_waits_for_all_parents(self):
        fast, slow = Fake(sleep=0.01), Fake(sleep=0.2)
        nodes = [
            node("f", "llm", {"prompt": "f"}),
            node("s", "tool"),
            node("j", "transform", {"output": "{{ nodes.f.text }}+{{ nodes.s.text }}"}),
        ]
        result, events = execute(nodes, [edge("f", "j"), edge("s", "j")], runners={"llm": fast, "tool": slow})
        assert result.output == "f+"
        check_event_order(events, [edge("f", "j"), edge("s", "j")])

    def test_emit_is_called_from_the_calling_thread_only(self):
        nodes, edges, fake = fan_out(4, 0.02)
        threads = set()
        engine = WorkflowEngine(runners={"llm": fake})
        engine.run(nodes, edges, {}, emit=lambda event: threads.add(threading.get_ident()))
        assert threads == {threading.get_ident()}

    def test_a_broken_listener_does_not_break_the_run(self):
        def emit(event):
            raise RuntimeError("listener down")

        result = WorkflowEngine(runners={"llm": Fake()}).run([node("l", "llm")], [], {}, emit=emit)
        assert result.status == "completed"


# -- failures, retries, timeouts -------------------------------------------------------------------


class TestFailures:
    def test_failure_fails_the_execution_and_skips_the_rest(self):
        bad, slow = Fake(error=NodeError("provider down")), Fake(sleep=0.2)
        nodes = [
            node("t", "trigger"),
            node("bad", "llm"),
            node("after", "transform", {"output": 1}),
            node("side", "tool"),
            node("side2", "transform", {"output": 2}),
        ]
        edges = [edge("t", "bad"), edge("bad", "after"), edge("t", "side"), edge("side", "side2")]
        result, events = execute(nodes, edges, runners={"llm": bad, "tool": slow})
        assert result.status == "failed" and result.output is None
        assert result.error == "Node 'bad' failed: provider down"
        # The running sibling finishes; nothing new starts after the failure.
        assert statuses(result) == {
            "t": "completed",
            "bad": "failed",
            "after": "skipped",
            "side": "completed",
            "side2": "skipped",
        }
        failed = result.node_results[1]
        assert failed["error"] == "provider down" and failed["output"] is None and failed["attempts"] == 1
        kinds = [(e["type"], e.get("node_id")) for e in events if e.get("node_id") == "bad"]
        assert kinds == [("node_start", "bad"), ("node_error", "bad"), ("node_complete", "bad")]
        assert of_type(events, "node_error")[0]["error"] == "provider down"
        final = events[-1]
        assert final == {
            "type": "execution_complete",
            "status": "failed",
            "output": None,
            "error": "Node 'bad' failed: provider down",
            "duration_ms": final["duration_ms"],
        }

    def test_on_error_continue(self):
        nodes = [
            node("t", "trigger"),
            node("bad", "llm", on_error="continue"),
            node("after", "transform", {"output": "saw {{ nodes.bad.error }} / {{ prev.error }}"}),
        ]
        edges = [edge("t", "bad"), edge("bad", "after")]
        result, events = execute(nodes, edges, runners={"llm": Fake(error=NodeError("boom"))})
        assert result.status == "completed" and result.error is None
        assert statuses(result)["bad"] == "failed"
        assert outputs(result)["bad"] == {"error": "boom"}
        assert result.output == "saw boom / boom"
        assert of_type(events, "node_error", "bad")

    def test_failed_condition_with_continue_takes_no_branch(self):
        nodes = [
            node("c", "condition", {"left": "{{ nodes.c2 }}", "operator": "eq", "right": 1}, on_error="continue"),
            node("c2", "transform", {"output": 1}),
            node("a", "transform", {"output": "a"}),
            node("b", "transform", {"output": "b"}),
        ]
        result, _ = execute(nodes, [edge("c", "a", "true"), edge("c", "b", "false")])
        assert statuses(result)["c"] == "failed" and result.status == "completed"
        assert statuses(result)["a"] == statuses(result)["b"] == "skipped"

    def test_plain_exceptions_become_messages_without_tracebacks(self):
        result, _ = execute([node("l", "llm")], [], runners={"llm": Fake(error=ValueError("bad value"))})
        assert result.node_results[0]["error"] == "ValueError: bad value"
        assert "Traceback" not in result.error

    @pytest.mark.parametrize(
        ("output", "message"),
        [
            (object(), "not JSON-serialisable"),
            ({"x": float("nan")}, "not JSON-serialisable"),
            ({1, 2}, "not JSON-serialisable"),
            ("x" * 2000, "larger than 1000 bytes"),
        ],
    )
    def test_bad_outputs_fail_the_node(self, output, message):
        limits = EngineLimits(max_output_bytes=1000)
        result, _ = execute([node("l", "llm")], [], runners={"llm": Fake(output=output)}, limits=limits)
        assert result.status == "failed" and message in result.node_results[0]["error"]

    def test_outputs_are_made_storable(self):
        # PostgreSQL refuses NUL in text and jsonb, and lone surrogates are not UTF-8: both become U+FFFD.
        produced = {"text": "a\x00b\ud800c", "k\x00": ["\x00"], "plain \\u0000": "é😀"}
        result, events = execute([node("l", "llm")], [], runners={"llm": Fake(output=produced)})
        expected = {"text": "a\ufffdb\ufffdc", "k\ufffd": ["\ufffd"], "plain \\u0000": "é😀"}
        assert result.status == "completed" and outputs(result)["l"] == expected
        assert [e["output"] for e in events if e["type"] == "node_complete"] == [expected]

    def test_outputs_are_copies(self):
        produced = {"list": [1]}

        def producer(call):
            return produced

        def mutator(call):
            call.prev["list"].append("mutated")
            call.input["x"] = "mutated"
            return call.prev

        nodes = [node("p", "llm"), node("m", "tool"), node("r", "transform", {"output": "{{ nodes.p }}|{{ input }}"})]
        edges = [edge("p", "m"), edge("m", "r")]
        result, _ = execute(nodes, edges, {"x": 1}, runners={"llm": producer, "tool": mutator})
        produced["list"].append("after")
        assert outputs(result)["p"] == {"list": [1]}
        assert outputs(result)["m"] == {"list": [1, "mutated"]}
        assert result.output == '{"list":[1]}|{"x":1}'

    def test_template_errors_fail_without_retry(self):
        nodes = [
            node("x", "transform", {"output": "{{ nodes.nope.text }}"}, retry={"max_attempts": 3, "backoff_ms": 0})
        ]
        result, _ = execute(nodes, [])
        entry = result.node_results[0]
        assert entry["status"] == "failed" and entry["attempts"] == 1 and "nope" in entry["error"]


class TestRetries:
    def test_retries_until_success(self):
        fake = Fake(fail_times=2)
        nodes = [node("l", "llm", retry={"max_attempts": 3, "backoff_ms": 40})]
        began = time.monotonic()
        result, events = execute(nodes, [], runners={"llm": fake})
        assert result.status == "completed"
        entry = result.node_results[0]
        assert entry["attempts"] == 3 and entry["output"]["attempt"] == 3
        assert [call.attempt for call in fake.calls] == [1, 2, 3]
        # Exponential backoff: 40 ms then 80 ms.
        assert time.monotonic() - began >= 0.12
        assert of_type(events, "node_error") == [] and len(of_type(events, "node_start")) == 1

    def test_gives_up_after_max_attempts(self):
        fake = Fake(fail_times=5)
        result, _ = execute([node("l", "llm", retry={"max_attempts": 2, "backoff_ms": 0})], [], runners={"llm": fake})
        entry = result.node_results[0]
        assert entry["status"] == "failed" and entry["attempts"] == 2 and entry["error"] == "attempt 2 failed"

    def test_non_retryable_errors_stop_at_once(self):
        fake = Fake(error=NodeError("bad input", retryable=False))
        result, _ = execute([node("l", "llm", retry={"max_attempts": 5, "backoff_ms": 0})], [], runners={"llm": fake})
        assert result.node_results[0]["attempts"] == 1 and len(fake.calls) == 1

    def test_backoff_is_capped(self):
        fake = Fake(fail_times=1)
        limits = EngineLimits(max_backoff_ms=10)
        began = time.monotonic()
        execute(
            [node("l", "llm", retry={"max_attempts": 2, "backoff_ms": 60000})], [], runners={"llm": fake}, limits=limits
        )
        assert time.monotonic() - began < 1


class TestTimeouts:
    def test_timeout_fails_the_attempt_and_cancels_the_runner(self):
        fake = Fake(sleep=5)
        began = time.monotonic()
        result, _ = execute([node("l", "llm", timeout_ms=100)], [], runners={"llm": fake})
        assert time.monotonic() - began < 1
        entry = result.node_results[0]
        assert entry["status"] == "failed" and entry["error"] == "Timed out after 100 ms."
        for _ in range(100):
            if fake.cancelled:
                break
            time.sleep(0.01)
        assert fake.cancelled == ["l"]  # the runner saw its cancel token set

    def test_timeout_per_attempt_with_retry(self):
        fake = Fake(sleep=5)
        nodes = [node("l", "llm", timeout_ms=50, retry={"max_attempts": 2, "backoff_ms": 0}, on_error="continue")]
        result, _ = execute(nodes, [], runners={"llm": fake})
        entry = result.node_results[0]
        assert entry["attempts"] == 2 and entry["output"] == {"error": "Timed out after 50 ms."}

    def test_an_uncooperative_runner_is_abandoned(self):
        def stubborn(call):
            time.sleep(0.5)
            return {"late": True}

        began = time.monotonic()
        result, _ = execute([node("l", "llm", timeout_ms=50)], [], runners={"llm": stubborn})
        assert time.monotonic() - began < 0.4 and result.status == "failed"

    def test_deadline_is_visible_to_the_runner(self):
        seen = []
        execute(
            [node("l", "llm", timeout_ms=2000)], [], runners={"llm": lambda call: seen.append(call.time_remaining())}
        )
        assert 0 < seen[0] <= 2

    def test_default_timeout_from_limits(self):
        result, _ = execute(
            [node("l", "llm")], [], runners={"llm": Fake(sleep=5)}, limits=EngineLimits(default_timeout_ms=50)
        )
        assert result.node_results[0]["error"] == "Timed out after 50 ms."

    def test_thread_cleanup_runs_in_the_runner_thread(self):
        runner_threads, cleanup_threads = [], []

        def runner(call):
            runner_threads.append(threading.get_ident())
            return 1

        engine = WorkflowEngine(
            runners={"llm": runner}, thread_cleanup=lambda: cleanup_threads.append(threading.get_ident())
        )
        engine.run([node("a", "llm"), node("b", "llm")], [], {})
        assert sorted(runner_threads) == sorted(cleanup_threads) and len(cleanup_threads) == 2


# -- cancellation ----------------------------------------------------------------------------------


def cancel_after(token, seconds):
    timer = threading.Timer(seconds, token.cancel)
    timer.start()
    return timer


class TestCancellation:
    def test_cancel_mid_run(self):
        slow = Fake(sleep=10)
        nodes = [
            node("t", "trigger"),
            node("running", "llm"),
            node("pending", "transform", {"output": 1}),
            node("wait", "delay", {"seconds": 300}),
            node("pending2", "transform", {"output": 2}),
        ]
        edges = [edge("t", "running"), edge("running", "pending"), edge("t", "wait"), edge("wait", "pending2")]
        token = CancelToken()
        cancel_after(token, 0.2)
        began = time.monotonic()
        result, events = execute(nodes, edges, runners={"llm": slow}, token=token)
        assert time.monotonic() - began < 2
        assert result.status == "cancelled" and result.error == "Execution cancelled." and result.output is None
        assert statuses(result) == {
            "t": "completed",
            "running": "cancelled",
            "pending": "cancelled",
            "wait": "cancelled",
            "pending2": "cancelled",
        }
        assert slow.cancelled == ["running"]
        assert of_type(events, "node_start", "pending") == []
        assert [e["status"] for e in of_type(events, "node_complete", "pending")] == ["cancelled"]
        assert events[-1]["type"] == "execution_complete" and events[-1]["status"] == "cancelled"
        assert of_type(events, "node_error") == []

    def test_cancel_before_start(self):
        token = CancelToken()
        token.cancel()
        result, events = execute(
            [node("t", "trigger"), node("x", "transform", {"output": 1})], [edge("t", "x")], token=token
        )
        assert result.status == "cancelled" and set(statuses(result).values()) == {"cancelled"}
        assert of_type(events, "node_start") == []

    def test_a_runner_that_ignores_cancellation_is_abandoned_after_the_grace(self):
        def stubborn(call):
            time.sleep(1)
            raise NodeError("too late")

        token = CancelToken()
        cancel_after(token, 0.1)
        began = time.monotonic()
        limits = EngineLimits(cancel_grace_seconds=0.1)
        result, _ = execute([node("l", "llm")], [], runners={"llm": stubborn}, token=token, limits=limits)
        assert time.monotonic() - began < 0.8
        assert statuses(result) == {"l": "cancelled"} and result.status == "cancelled"

    def test_a_node_that_finishes_within_the_grace_is_completed(self):
        def finisher(call):
            call.cancel_token.wait(5)
            return {"finished": True}

        token = CancelToken()
        cancel_after(token, 0.1)
        nodes = [node("l", "llm"), node("next", "transform", {"output": 1})]
        result, _ = execute(nodes, [edge("l", "next")], runners={"llm": finisher}, token=token)
        assert statuses(result) == {"l": "completed", "next": "cancelled"} and result.status == "cancelled"

    def test_cancel_check_polling(self):
        polls = []

        def check():
            polls.append(1)
            return len(polls) >= 2

        engine = WorkflowEngine(runners={"llm": Fake(sleep=10)}, cancel_check=check, cancel_check_interval=0.05)
        began = time.monotonic()
        result = engine.run([node("l", "llm")], [], {})
        assert result.status == "cancelled" and time.monotonic() - began < 2

    def test_cancel_check_runs_while_events_stream(self):
        polls = []

        def check():
            polls.append(time.monotonic())
            return len(polls) >= 3

        def quick(call):
            time.sleep(0.005)
            return call.loop["index"]

        engine = WorkflowEngine(runners={"llm": quick}, cancel_check=check, cancel_check_interval=0.05)
        nodes = [node("l", "loop", {"items": "{{ range(1000) | list }}"}), node("w", "llm")]
        began = time.monotonic()
        result = engine.run(nodes, [edge("l", "w", "loop")], {})
        assert len(polls) == 3 and result.status == "cancelled"
        assert time.monotonic() - began < 2  # 1000 iterations would take over 5 s

    def test_cancel_during_backoff(self):
        token = CancelToken()
        cancel_after(token, 0.1)
        fake = Fake(fail_times=5)
        nodes = [node("l", "llm", retry={"max_attempts": 5, "backoff_ms": 60000})]
        began = time.monotonic()
        result, _ = execute(nodes, [], runners={"llm": fake}, token=token)
        assert time.monotonic() - began < 1 and statuses(result) == {"l": "cancelled"}


class TestCancelToken:
    def test_children_follow_parents(self):
        parent = CancelToken()
        child = parent.child()
        grandchild = child.child()
        child.cancel()
        assert child.is_cancelled() and grandchild.is_cancelled() and not parent.is_cancelled()
        other = parent.child()
        parent.cancel()
        assert other.is_cancelled()
        assert parent.child().is_cancelled()  # born cancelled

    def test_wait_returns_early_on_cancel(self):
        token = CancelToken()
        assert token.wait(0.01) is False
        cancel_after(token, 0.05)
        began = time.monotonic()
        assert token.wait(5) is True and time.monotonic() - began < 1

    def test_callbacks(self):
        token, calls = CancelToken(), []
        remove = token.add_callback(lambda: calls.append("a"))
        token.add_callback(lambda: calls.append("b"))
        remove()
        token.cancel()
        token.cancel()
        token.add_callback(lambda: calls.append("late"))
        assert calls == ["b", "late"]


# -- delay -----------------------------------------------------------------------------------------


class TestDelay:
    def test_delay_passes_its_input_on(self):
        nodes = [node("t", "trigger"), node("d", "delay", {"seconds": 0.05}), node("o", "output")]
        began = time.monotonic()
        result, _ = execute(nodes, [edge("t", "d"), edge("d", "o")], {"v": 1})
        assert time.monotonic() - began >= 0.05
        assert outputs(result)["d"] == {"v": 1} and result.output == {"v": 1}

    def test_delay_is_capped(self):
        began = time.monotonic()
        result, _ = execute([node("d", "delay", {"seconds": 300})], [], limits=EngineLimits(max_delay_seconds=0.1))
        assert result.status == "completed" and 0.1 <= time.monotonic() - began < 1

    def test_templated_and_bad_seconds(self):
        result, _ = execute([node("d", "delay", {"seconds": "{{ input.s }}"})], [], {"s": "0.01"})
        assert result.status == "completed"
        result, _ = execute([node("d", "delay", {"seconds": "soon"})], [])
        assert result.status == "failed" and "Delay seconds" in result.error


# -- loops -----------------------------------------------------------------------------------------


def loop_graph(items="{{ input.items }}", **loop_data):
    nodes = [
        node("t", "trigger"),
        node("each", "loop", {"items": items, **loop_data}),
        node("work", "llm", {"prompt": "{{ index }}:{{ item.name }}:{{ prev.name }}:{{ nodes.each.index }}"}),
        node("shape", "transform", {"output": "{{ nodes.work.text | upper }}"}),
        node("after", "transform", {"output": {"all": "{{ nodes.each.items }}", "last": "{{ nodes.shape }}"}}),
    ]
    edges = [edge("t", "each"), edge("each", "work", "loop"), edge("work", "shape"), edge("each", "after", "done")]
    return nodes, edges


class TestLoops:
    def test_runs_the_body_per_item_then_done(self):
        nodes, edges = loop_graph()
        fake = Fake()
        result, events = execute(
            nodes, edges, {"items": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, runners={"llm": fake}
        )
        assert result.status == "completed"
        assert outputs(result)["each"] == {"items": ["0:A:A:0", "1:B:B:1", "2:C:C:2"]}
        assert result.output == {"all": ["0:A:A:0", "1:B:B:1", "2:C:C:2"], "last": "2:C:C:2"}
        # Body nodes appear once in node_results, with their last iteration.
        assert outputs(result)["work"]["text"] == "2:c:c:2" and statuses(result)["shape"] == "completed"
        assert [call.loop["index"] for call in fake.calls] == [0, 1, 2]
        assert fake.calls[1].loop == {"loop_id": "each", "index": 1, "item": {"name": "b"}}
        body_events = [(e["type"], e["node_id"], e["iteration"]) for e in events if "iteration" in e]
        assert body_events[:4] == [
            ("node_start", "work", 0),
            ("node_complete", "work", 0),
            ("node_start", "shape", 0),
            ("node_complete", "shape", 0),
        ]
        assert len(body_events) == 12 and all(e["loop_id"] == "each" for e in events if "iteration" in e)
        order = [(e["type"], e["node_id"]) for e in events if "iteration" not in e and "node_id" in e]
        assert order.index(("node_complete", "each")) < order.index(("node_start", "after"))
        check_event_order(events, edges)

    def test_items_must_be_a_list(self):
        nodes, edges = loop_graph(items="{{ input.items }}")
        result, _ = execute(nodes, edges, {"items": {"not": "a list"}})
        assert result.status == "failed"
        assert result.error == "Node 'each' failed: Loop items must render to a list, got dict."
        assert statuses(result)["work"] == "skipped" and statuses(result)["after"] == "skipped"

    def test_max_iterations_caps(self):
        nodes, edges = loop_graph(max_iterations=2)
        fake = Fake()
        result, _ = execute(nodes, edges, {"items": [{"name": str(i)} for i in range(5)]}, runners={"llm": fake})
        assert len(outputs(result)["each"]["items"]) == 2 and len(fake.calls) == 2

    def test_engine_limit_caps(self):
        nodes, edges = loop_graph(max_iterations=1000)
        limits = EngineLimits(max_loop_iterations=3)
        result, _ = execute(nodes, edges, {"items": [{"name": str(i)} for i in range(10)]}, limits=limits)
        assert len(outputs(result)["each"]["items"]) == 3

    def test_empty_list_skips_the_body(self):
        nodes, edges = loop_graph()
        result, events = execute(nodes, edges, {"items": []})
        assert outputs(result)["each"] == {"items": []}
        assert statuses(result)["work"] == "skipped" and statuses(result)["shape"] == "skipped"
        # `after` reads nodes.shape, which never ran: a strict undefined, so the node fails.
        assert result.status == "failed" and result.error.startswith("Node 'after' failed: template")
        [work] = of_type(events, "node_complete", "work")
        assert work["status"] == "skipped" and work["iteration"] is None

    def test_loop_without_body_returns_the_items(self):
        nodes = [node("l", "loop", {"items": "{{ [1, 2] }}"}), node("d", "output", {"value": "{{ prev.items }}"})]
        result, _ = execute(nodes, [edge("l", "d", "done")])
        assert result.output == [1, 2]

    def test_branching_inside_the_body(self):
        nodes = [
            node("l", "loop", {"items": "{{ [1, 5, 10] }}"}),
            node("c", "condition", {"left": "{{ item }}", "operator": "gte", "right": 5}),
            node("big", "transform", {"output": "big {{ item }}"}),
            node("small", "transform", {"output": "small {{ item }}"}),
        ]
        edges = [edge("l", "c", "loop"), edge("c", "big", "true"), edge("c", "small", "false")]
        result, _ = execute(nodes, edges)
        assert outputs(result)["l"] == {"items": ["small 1", "big 5", "big 10"]}
        assert statuses(result)["small"] == "skipped"  # as in the last iteration

    def test_body_failure_fails_the_loop(self):
        fail_on_b = Fake()

        def runner(call):
            if call.loop["item"] == "b":
                raise NodeError("no b")
            return fail_on_b(call)

        nodes = [node("l", "loop", {"items": "{{ ['a', 'b', 'c'] }}"}), node("w", "llm")]
        result, _ = execute(nodes, [edge("l", "w", "loop")], runners={"llm": runner})
        assert result.status == "failed"
        assert result.error == "Node 'l' failed: Iteration 1 failed at node 'w': no b"
        assert len(fail_on_b.calls) == 1

    def test_body_failure_with_continue_is_the_item_result(self):
        def runner(call):
            if call.loop["item"] == "b":
                raise NodeError("no b")
            return call.loop["item"]

        nodes = [node("l", "loop", {"items": "{{ ['a', 'b'] }}"}), node("w", "llm", on_error="continue")]
        result, _ = execute(nodes, [edge("l", "w", "loop")], runners={"llm": runner})
        assert outputs(result)["l"] == {"items": ["a", {"error": "no b"}]}

    def test_nested_loops(self):
        nodes = [
            node("outer", "loop", {"items": "{{ [[1, 2], [3]] }}"}),
            node("inner", "loop", {"items": "{{ item }}"}),
            node("cell", "transform", {"output": "{{ nodes.outer.index }}.{{ index }}={{ item }}"}),
            node("row", "transform", {"output": "{{ prev['items'] | join(',') }}"}),
        ]
        edges = [edge("outer", "inner", "loop"), edge("inner", "cell", "loop"), edge("inner", "row", "done")]
        result, _ = execute(nodes, edges)
        assert outputs(result)["outer"] == {"items": ["0.0=1,0.1=2", "1.0=3"]}
        assert outputs(result)["cell"] == "1.0=3"

    def test_cancel_inside_a_loop(self):
        token = CancelToken()
        cancel_after(token, 0.15)
        nodes = [node("l", "loop", {"items": "{{ range(100) | list }}"}), node("w", "llm"), node("d", "output")]
        edges = [edge("l", "w", "loop"), edge("l", "d", "done")]
        result, _ = execute(nodes, edges, runners={"llm": Fake(sleep=0.05)}, token=token)
        assert result.status == "cancelled"
        assert statuses(result) == {"l": "cancelled", "w": "cancelled", "d": "cancelled"}

    def test_loop_timeout_abandons_the_body_quietly(self):
        nodes = [node("l", "loop", {"items": "{{ range(100) | list }}"}, timeout_ms=100), node("w", "llm")]
        result, events = execute(nodes, [edge("l", "w", "loop")], runners={"llm": Fake(sleep=0.03)})
        assert result.status == "failed" and "Timed out" in result.error
        assert statuses(result)["w"] in ("cancelled", "completed")
        time.sleep(0.1)
        assert events[-1]["type"] == "execution_complete"


# -- execution output rule -------------------------------------------------------------------------


class TestOutputRule:
    def test_output_node_wins_over_later_sinks(self):
        nodes = [
            node("o", "output", {"value": "from output"}),
            node("slow", "llm"),
        ]
        result, _ = execute(nodes, [], runners={"llm": Fake(sleep=0.1)})
        assert result.output == "from output"

    def test_last_sink_to_finish_without_output_node(self):
        nodes = [node("slow", "llm", {"prompt": "slow"}), node("fast", "tool")]
        runners = {"llm": Fake(sleep=0.15), "tool": Fake(output={"fast": True})}
        result, _ = execute(nodes, [], runners=runners)
        assert result.output == {"text": "slow", "attempt": 1}

    def test_skipped_output_node_falls_back_to_sinks(self):
        nodes = [
            node("c", "condition", {"left": 1, "operator": "eq", "right": 1}),
            node("o", "output", {"value": "never"}),
            node("t", "transform", {"output": "taken"}),
        ]
        result, _ = execute(nodes, [edge("c", "o", "false"), edge("c", "t", "true")])
        assert result.output == "taken"

    def test_one_output_per_exclusive_branch(self):
        nodes = [
            node("c", "condition", {"left": "{{ input.ok }}", "operator": "is_true"}),
            node("yes", "output", {"value": "yes"}),
            node("no", "output", {"value": "no"}),
        ]
        edges = [edge("c", "yes", "true"), edge("c", "no", "false")]
        assert execute(nodes, edges, {"ok": True})[0].output == "yes"
        assert execute(nodes, edges, {"ok": False})[0].output == "no"


# -- results and graph problems --------------------------------------------------------------------


class TestResults:
    def test_node_results_shape_and_order(self):
        nodes = [node("b", "transform", {"output": 1}), node("a", "trigger")]
        result, _ = execute(nodes, [edge("a", "b")])
        assert [entry["node_id"] for entry in result.node_results] == ["b", "a"]
        entry = result.node_results[0]
        assert set(entry) == {
            "node_id",
            "node_type",
            "status",
            "output",
            "error",
            "started_at",
            "completed_at",
            "duration_ms",
            "attempts",
        }
        assert entry["started_at"].endswith("Z") and entry["completed_at"].endswith("Z")
        assert entry["started_at"] <= entry["completed_at"] and isinstance(entry["duration_ms"], int)
        assert result.started_at.endswith("Z") and result.as_dict()["status"] == "completed"

    def test_run_workflow_helper(self):
        result = run_workflow([node("t", "trigger")], [], {"a": 1})
        assert result.output == {"a": 1}

    @pytest.mark.parametrize(
        ("nodes", "edges", "message"),
        [
            ([node("a", "trigger"), node("b", "trigger")], [edge("a", "b"), edge("b", "a")], "cycle: a -> b -> a"),
            ([node("a", "trigger")], [edge("a", "ghost")], "missing node"),
            ([node("a", "trigger"), node("a", "trigger")], [], "duplicate"),
            ("nodes", [], "must be lists"),
            ([{"id": "x"}], [], "string id and type"),
            (
                [node("t", "trigger"), node("l", "loop", {"items": "x"}), node("b", "trigger")],
                [edge("l", "b", "loop"), edge("t", "b")],
                "body of loop",
            ),
        ],
    )
    def test_unrunnable_graphs_raise(self, nodes, edges, message):
        with pytest.raises(GraphError, match=message):
            execute(nodes, edges)

    def test_input_must_be_json(self):
        with pytest.raises(ValueError, match="not JSON"):
            execute([node("t", "trigger")], [], {"x": object()})

    def test_limits_from_settings(self, settings):
        settings.WORKFLOW_MAX_PARALLEL_NODES = 7
        settings.WORKFLOW_MAX_DELAY_SECONDS = 9
        limits = EngineLimits.from_settings(settings, cancel_grace_seconds=1)
        assert (limits.max_parallel, limits.max_delay_seconds, limits.cancel_grace_seconds) == (7, 9, 1)
        assert limits.max_loop_iterations == 1000
