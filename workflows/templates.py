"""`{{ ... }}` templates in workflow node data, rendered in a sandboxed Jinja2 environment (CONTRACT §3).

Only expressions exist: `{% ... %}` statements and `{# ... #}` comments are plain text, so a template
cannot loop, assign or define macros, and a prompt that happens to contain `{%` is left alone.

The context holds `input`, `nodes` (node id -> output), `prev`, and `item`/`index` inside loops;
nothing else (no settings, no environment, no secrets).

Rendering rules:

- A string without `{{` is returned unchanged.
- A string that is exactly one `{{ expr }}` (surrounding whitespace allowed) renders to the native
  value of the expression: list, dict, number, bool, None or string.
- Any other string renders to text. Inside text, dicts and lists appear as compact JSON, booleans as
  `true`/`false` and None as the empty string.
- A JSON value (dict/list) is rendered by rendering every string inside it; keys are left alone.
- Undefined values are strict but chainable: `nodes.a.text` on a node that did not run is undefined,
  and so is any attribute of it. An undefined value may be tested (`is defined`), defaulted
  (`| default(...)`) or used as false (`nodes.a.text or nodes.b.text`), but printing, iterating or
  returning it raises `TemplateError` naming the template and the missing name.
- Output is bounded (`MAX_RENDERED_CHARS`); the obvious ways of building a huge value inside a template
  (string/list repetition, big exponents, huge padding widths, joins and replaces) are refused before
  the memory is allocated. Time is bounded by the node's `timeout_ms`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes as jinja_nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.runtime import ChainableUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Bounds: one rendered string or native value, one template source, nesting, and integer arguments
# (padding widths and the like) that would make Python allocate before any output check could run.
MAX_RENDERED_CHARS = 1_000_000
MAX_TEMPLATE_CHARS = 100_000
MAX_DEPTH = 64
MAX_INT_ARGUMENT = 10_000
MAX_RANGE = 10_000
_MAX_POWER_BITS = 100_000
# Filters whose integer arguments size what they allocate (padding widths, batch fill counts).
_SIZING_FILTERS = frozenset({"center", "indent", "batch", "slice"})

CONTEXT_NAMES = frozenset({"input", "nodes", "prev", "item", "index"})

_MARKER = "{{"
_DIGITS = re.compile(r"\d+")


class TemplateError(Exception):
    """A template could not be parsed or rendered; the message is safe to show to a user."""


class _StrictChainableUndefined(ChainableUndefined):
    """Missing values chain and test as false, but cannot be printed, iterated or returned."""

    __slots__ = ()
    __str__ = __iter__ = __len__ = __contains__ = Undefined._fail_with_undefined_error  # type: ignore[assignment]


def _refuse(message: str) -> None:
    raise TemplateError(message)


def _check_int_arguments(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARGUMENT:
            _refuse(f"integer argument {value} is larger than {MAX_INT_ARGUMENT}")


def _check_format_string(fmt: Any) -> None:
    # Widths and precisions are the only way a format string allocates more than its arguments.
    if isinstance(fmt, str):
        for digits in _DIGITS.findall(fmt):
            if len(digits) > 6 or int(digits) > MAX_INT_ARGUMENT:
                _refuse(f"format width {digits} is larger than {MAX_INT_ARGUMENT}")


def _bounded_join(separator: str, items: Iterable[Any]) -> str:
    parts: list[str] = []
    total = 0
    for item in items:
        text = str(item)
        total += len(text) + len(separator)
        if total > MAX_RENDERED_CHARS:
            _refuse(f"joined text is longer than {MAX_RENDERED_CHARS} characters")
        parts.append(text)
    return separator.join(parts)


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        occurrences = text.count(old)
        if isinstance(count, int) and count >= 0:
            occurrences = min(occurrences, count)
        if len(text) + occurrences * len(new) > MAX_RENDERED_CHARS:
            _refuse(f"replaced text would be longer than {MAX_RENDERED_CHARS} characters")


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters are called directly by compiled templates (not through `call`), so they are wrapped here.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value, rest = (args[offset] if len(args) > offset else None), args[offset + 1 :]
        if name in _SIZING_FILTERS:
            _check_int_arguments(rest, kwargs)
        if name == "format":
            _check_format_string(value)
        elif name == "replace" and len(rest) >= 2:
            _check_replace(value, *rest[:3])
        elif name == "join":
            separator = rest[0] if rest and isinstance(rest[0], str) else kwargs.get("d", "")
            if isinstance(value, Iterable) and not kwargs.get("attribute") and len(rest) < 2:
                return _bounded_join(str(separator), value)
        return func(*args, **kwargs)

    return guarded


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with resource guards on operators and calls."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Keys before attributes on dicts: `nodes.loop.items` is the loop's `items`, not `dict.items`."""
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Refuse operations whose result would be huge before computing them."""
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and not isinstance(times, bool):
                    size = len(seq)
                    if not isinstance(seq, str):
                        size += sum(len(item) for item in seq if isinstance(item, str))
                    if times > 0 and size * times > MAX_RENDERED_CHARS:
                        _refuse(f"repetition would be larger than {MAX_RENDERED_CHARS}")
        elif operator == "**":
            big_int = isinstance(left, int) and isinstance(right, int) and right > 0
            if big_int and right * max(abs(left).bit_length(), 1) > _MAX_POWER_BITS:
                _refuse("exponent too large")
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Bound integer arguments of string methods (padding widths), and their joins and replaces."""
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            _check_int_arguments(args, kwargs)
            if name == "join" and len(args) == 1:
                return _bounded_join(owner, args[0])
            if name == "replace" and len(args) >= 2:
                _check_replace(owner, *args[:3])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Also bound the widths inside `'...'.format(...)` format strings."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_string(value.__self__)
        return wrapped


def _finalize(value: Any) -> Any:
    if isinstance(value, Undefined):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) or (isinstance(value, Iterable) and not isinstance(value, bytes | bytearray)):
        return json.dumps(to_json_value(value), ensure_ascii=False, separators=(",", ":"))
    return value


def _from_json(value: Any) -> Any:
    if not isinstance(value, str):
        _refuse("fromjson expects a string")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise TemplateError(f"fromjson: invalid JSON ({exc})") from None


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        _refuse(f"range is longer than {MAX_RANGE}")
    return numbers


def _build_environment() -> _Environment:
    env = _Environment(
        # Sentinels no workflow text contains: `{% %}` and `{# #}` are plain text, only `{{ }}` is special.
        block_start_string="\x00{%",
        block_end_string="%}\x00",
        comment_start_string="\x00{#",
        comment_end_string="#}\x00",
        keep_trailing_newline=True,
        autoescape=False,
        undefined=_StrictChainableUndefined,
        finalize=_finalize,
    )
    # Only pure helpers stay; lipsum, cycler, joiner and namespace have no use without statements.
    env.globals = {"range": _bounded_range, "dict": dict}
    env.filters["fromjson"] = _from_json
    env.filters = {name: _guard_filter(name, func) for name, func in env.filters.items()}
    return env


_ENV = _build_environment()


class _Compiled:
    """One compiled template: a native expression or a text template."""

    __slots__ = ("expression", "source", "template")

    def __init__(self, source: str, expression: Any = None, template: Any = None):
        self.source = source
        self.expression = expression
        self.template = template


def _native_expression(source: str) -> str | None:
    """The expression inside a string that is exactly one `{{ ... }}` block, else None."""
    stripped = source.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return None
    blocks = 0
    for _, kind, value in _ENV.lex(source):
        if kind == "variable_begin":
            blocks += 1
        elif kind == "data" and value.strip():
            return None
    if blocks != 1:
        return None
    inner = stripped[2:-2]
    # `{{- x -}}` whitespace control belongs to the delimiters, not to the expression.
    if inner.startswith("-"):
        inner = inner[1:]
    if inner.endswith("-"):
        inner = inner[:-1]
    return inner


def _describe(source: str) -> str:
    return source if len(source) <= 120 else source[:117] + "..."


@functools.lru_cache(maxsize=1024)
def _compile(source: str) -> _Compiled:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template is longer than {MAX_TEMPLATE_CHARS} characters")
    if "\x00" in source:
        raise TemplateError("templates cannot contain NUL characters")
    try:
        expression = _native_expression(source)
        if expression is not None:
            return _Compiled(source, expression=_ENV.compile_expression(expression, undefined_to_none=False))
        return _Compiled(source, template=_ENV.from_string(source))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error in {_describe(source)!r}: {exc.message} (line {exc.lineno})") from None


def to_json_value(value: Any, *, max_chars: int = MAX_RENDERED_CHARS) -> Any:
    """Convert a template result into plain JSON data (new containers), refusing undefined and odd types."""
    budget = [max_chars]

    def spend(amount: int) -> None:
        budget[0] -= amount
        if budget[0] < 0:
            _refuse(f"rendered value is larger than {max_chars} characters")

    def convert(item: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            _refuse(f"rendered value is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, Undefined):
            item._fail_with_undefined_error()
        if item is None or isinstance(item, bool):
            spend(5)
            return item
        if isinstance(item, int):
            spend(8)
            return int(item)
        if isinstance(item, float):
            if not math.isfinite(item):
                _refuse("rendered value is not a finite number")
            spend(8)
            return float(item)
        if isinstance(item, str):
            spend(len(item) + 2)
            return str(item)
        if isinstance(item, Mapping):
            result = {}
            for key, inner in item.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    _refuse(f"rendered mapping has a key of type {type(key).__name__}")
                spend(len(str(key)) + 3)
                result[key if isinstance(key, str) else json.dumps(key)] = convert(inner, depth + 1)
            return result
        if isinstance(item, Iterable) and not isinstance(item, bytes | bytearray):
            result_list = []
            for inner in item:
                spend(1)
                result_list.append(convert(inner, depth + 1))
            return result_list
        _refuse(f"rendered value of type {type(item).__name__} is not JSON")
        return None  # pragma: no cover - _refuse raises

    return convert(value, 0)


def _template_context(context: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in context.items() if name in CONTEXT_NAMES}


def render_string(source: str, context: Mapping[str, Any], *, max_chars: int = MAX_RENDERED_CHARS) -> Any:
    """Render one string: unchanged without `{{`, native for a lone `{{ expr }}`, else text."""
    if _MARKER not in source:
        return source
    compiled = _compile(source)
    variables = _template_context(context)
    try:
        if compiled.expression is not None:
            return to_json_value(compiled.expression(**variables), max_chars=max_chars)
        pieces: list[str] = []
        total = 0
        for piece in compiled.template.generate(**variables):
            total += len(piece)
            if total > max_chars:
                _refuse(f"rendered text is longer than {max_chars} characters")
            pieces.append(piece)
        return "".join(pieces)
    except TemplateError as exc:
        raise TemplateError(f"template {_describe(source)!r}: {exc}") from None
    except RecursionError:
        raise TemplateError(f"template {_describe(source)!r}: nested too deeply") from None
    except Exception as exc:  # Jinja undefined/security errors and Python errors in expressions alike
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise TemplateError(f"template {_describe(source)!r}: {message}") from None


def render_value(value: Any, context: Mapping[str, Any], *, max_chars: int = MAX_RENDERED_CHARS) -> Any:
    """Render every string inside a JSON value (dicts and lists recursively); returns new containers."""

    def render(item: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            _refuse(f"value is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            return render_string(item, context, max_chars=max_chars)
        if isinstance(item, Mapping):
            return {key: render(inner, depth + 1) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [render(inner, depth + 1) for inner in item]
        return item

    return render(value, 0)


def iter_templates(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield `(json_path, source)` for every string containing `{{` inside a JSON value."""
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        here, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        if isinstance(item, str):
            if _MARKER in item:
                yield here, item
        elif isinstance(item, Mapping):
            children = [(f"{here}.{key}" if here else str(key), inner, depth + 1) for key, inner in item.items()]
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(f"{here}[{i}]", inner, depth + 1) for i, inner in enumerate(item)]))


def _is_nodes(node: jinja_nodes.Node) -> bool:
    return isinstance(node, jinja_nodes.Name) and node.name == "nodes"


def _constant_string(node: jinja_nodes.Node) -> str | None:
    if isinstance(node, jinja_nodes.Const) and isinstance(node.value, str):
        return node.value
    return None


def _references_in_source(source: str) -> set[str]:
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError:
        return set()
    found: set[str] = set()
    method_lookups: set[int] = set()
    for call in tree.find_all(jinja_nodes.Call):
        callee = call.node
        if isinstance(callee, jinja_nodes.Getattr) and _is_nodes(callee.node):
            # `nodes.get('x')` is a dict method call, not a node named "get".
            method_lookups.add(id(callee))
            if callee.attr == "get" and call.args:
                name = _constant_string(call.args[0])
                if name is not None:
                    found.add(name)
    for lookup in tree.find_all(jinja_nodes.Getattr):
        if _is_nodes(lookup.node) and id(lookup) not in method_lookups:
            found.add(lookup.attr)
    for subscript in tree.find_all(jinja_nodes.Getitem):
        if _is_nodes(subscript.node):
            name = _constant_string(subscript.arg)
            if name is not None:
                found.add(name)
    return found


def template_references(value: Any) -> set[str]:
    """Node ids a value's templates name literally, as `nodes.<id>`, `nodes['<id>']` or `nodes.get('<id>')`."""
    found: set[str] = set()
    for _, source in iter_templates(value):
        found |= _references_in_source(source)
    return found


def template_syntax_errors(value: Any, *, path: str = "") -> list[str]:
    """One message per template inside a JSON value that does not compile, prefixed by its JSON path."""
    errors = []
    for here, source in iter_templates(value, path):
        try:
            _compile(source)
        except TemplateError as exc:
            errors.append(f"{here}: {exc}" if here else str(exc))
    return errors
