"""The comparison operators of `condition` and `switch` nodes (CONTRACT §3).

Both sides compare as numbers when both parse as numbers (ints, floats, or strings such as `"42"`,
`" 1.5e3 "`), else as text. Text forms: None is `""`, booleans `true`/`false`, dicts and lists compact
JSON with sorted keys. Comparisons are case-sensitive.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

OPERATORS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_empty",
    "not_empty",
    "is_true",
    "is_false",
)
UNARY_OPERATORS = frozenset({"is_empty", "not_empty", "is_true", "is_false"})

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})


class UnknownOperator(ValueError):
    """The operator is not one of `OPERATORS`."""


def as_number(value: Any) -> int | float | None:
    """The value as a finite number, or None when it is not one (booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text):
            return None
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        number = float(text)
        return number if math.isfinite(number) else None
    return None


def as_text(value: Any) -> str:
    """The text form used by string comparisons."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def as_bool(value: Any) -> bool | None:
    """True/False for booleans, 1/0 and words like "true"/"no"; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | dict | tuple):
        return len(value) == 0
    return False


def _equal(left: Any, right: Any) -> bool:
    left_number, right_number = as_number(left), as_number(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number
    return as_text(left) == as_text(right)


def _order(left: Any, right: Any) -> int:
    left_number, right_number = as_number(left), as_number(right)
    if left_number is not None and right_number is not None:
        a, b = left_number, right_number
    else:
        a, b = as_text(left), as_text(right)  # type: ignore[assignment]
    return (a > b) - (a < b)


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, list | tuple):
        return any(_equal(item, right) for item in left)
    if isinstance(left, dict):
        return as_text(right) in left
    return as_text(right) in as_text(left)


def compare(operator: str, left: Any, right: Any = None) -> bool:
    """Apply one operator; raises `UnknownOperator` for anything not in `OPERATORS`."""
    if operator == "eq":
        return _equal(left, right)
    if operator == "neq":
        return not _equal(left, right)
    if operator == "gt":
        return _order(left, right) > 0
    if operator == "gte":
        return _order(left, right) >= 0
    if operator == "lt":
        return _order(left, right) < 0
    if operator == "lte":
        return _order(left, right) <= 0
    if operator == "contains":
        return _contains(left, right)
    if operator == "not_contains":
        return not _contains(left, right)
    if operator == "starts_with":
        return as_text(left).startswith(as_text(right))
    if operator == "ends_with":
        return as_text(left).endswith(as_text(right))
    if operator == "is_empty":
        return _is_empty(left)
    if operator == "not_empty":
        return not _is_empty(left)
    if operator == "is_true":
        return as_bool(left) is True
    if operator == "is_false":
        return as_bool(left) is False
    raise UnknownOperator(f"unknown operator {operator!r}")
