"""The pure node types run by the engine itself: trigger, condition, switch, transform, delay, output.

`loop` is built in too, but lives in `core` because it schedules its body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .compare import UNARY_OPERATORS, UnknownOperator, as_number, compare
from .types import EngineLimits, NodeCall, NodeCancelled, NodeError


def run_trigger(call: NodeCall, limits: EngineLimits) -> Any:
    """The execution input."""
    return call.input


def _compare(operator: Any, left: Any, right: Any) -> bool:
    try:
        return compare(operator, left, right)
    except UnknownOperator:
        raise NodeError(f"Unknown operator {operator!r}.", retryable=False) from None


def run_condition(call: NodeCall, limits: EngineLimits) -> Any:
    """`{result: bool}`; the engine follows the "true" or "false" handle."""
    operator = call.data.get("operator")
    left = call.render(call.data.get("left"))
    right = None if operator in UNARY_OPERATORS else call.render(call.data.get("right"))
    return {"result": _compare(operator, left, right)}


def run_switch(call: NodeCall, limits: EngineLimits) -> Any:
    """`{branch}`: the label of the first matching case, else "default"."""
    value = call.render(call.data.get("value"))
    cases = call.data.get("cases") or []
    if not isinstance(cases, list):
        raise NodeError("Switch cases must be a list.", retryable=False)
    for case in cases:
        if not isinstance(case, dict) or not isinstance(case.get("label"), str):
            raise NodeError("Every switch case needs a string label.", retryable=False)
        operator = case.get("operator", "eq")
        right = None if operator in UNARY_OPERATORS else call.render(case.get("right"))
        if _compare(operator, value, right):
            return {"branch": case["label"]}
    return {"branch": "default"}


def run_transform(call: NodeCall, limits: EngineLimits) -> Any:
    """The rendered `output` value."""
    return call.render(call.data.get("output"))


def run_output(call: NodeCall, limits: EngineLimits) -> Any:
    """The rendered `value` (or the node's input when `value` is absent); it becomes the execution output."""
    if "value" not in call.data:
        return call.prev
    return call.render(call.data["value"])


def run_delay(call: NodeCall, limits: EngineLimits) -> Any:
    """Wait `seconds` (capped by the limit, cancellable), then pass the input on."""
    seconds = call.data.get("seconds", 0)
    if isinstance(seconds, str):
        seconds = call.render(seconds)
    number = as_number(seconds)
    if number is None or number < 0:
        raise NodeError(f"Delay seconds must be a number of at least 0, got {seconds!r}.", retryable=False)
    if call.cancel_token.wait(min(float(number), float(limits.max_delay_seconds))):
        raise NodeCancelled()
    return call.prev


BUILTIN_RUNNERS: dict[str, Callable[[NodeCall, EngineLimits], Any]] = {
    "trigger": run_trigger,
    "condition": run_condition,
    "switch": run_switch,
    "transform": run_transform,
    "output": run_output,
    "delay": run_delay,
}
