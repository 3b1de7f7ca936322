"""`calculate_math`: a safe arithmetic evaluator built on simpleeval.

Only numbers, arithmetic and comparison operators, a fixed set of math functions and the constants
pi, e and tau are allowed: every other syntax node (attributes, subscripts, strings, containers,
lambdas, comprehensions, keywords) is refused before it is evaluated.

Why evaluation time is bounded without a timer:
- the expression is at most MAX_EXPRESSION_LENGTH characters and MAX_NESTING_DEPTH deep, so it has
  a few hundred operations at most and the recursive evaluator never nears Python's stack limit;
- every intermediate value is checked: ints are at most MAX_INT_BITS bits, floats are finite, so
  each operand of each operation is small;
- the operations whose cost or result could explode on small operands are guarded *before* they
  run: `**` (estimated result bits = log2|base| * exponent), `*` (bit lengths add) and `<<`
  (bit length + shift), and `round` (a large negative ndigits on an int computes 10**-ndigits);
- every other operation (+, -, /, //, %, >>, comparisons, the math functions) costs at most
  polynomial time in its bounded operands, i.e. microseconds.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from simpleeval import InvalidExpression, SimpleEval

from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

MAX_EXPRESSION_LENGTH = 500
# About 3,000 decimal digits: well below Python's 4,300-digit int-to-str limit, so results always print.
MAX_INT_BITS = 10_000
MAX_NESTING_DEPTH = 100
MAX_ROUND_DIGITS = 400


class CalculationError(InvalidExpression):
    """An expression was refused or could not be evaluated; the message is shown to the caller."""


def _too_big() -> CalculationError:
    return CalculationError(f"The result would be too large (integers are limited to {MAX_INT_BITS} bits).")


def _power(base: Any, exponent: Any) -> Any:
    # Guard on the size of the result, not only the exponent: 2**9000 is fine, 10**9000 is not.
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base) > 1
        and math.log2(abs(base)) * exponent > MAX_INT_BITS
    ):
        raise _too_big()
    return base**exponent


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise _too_big()
    return left * right


def _left_shift(value: Any, shift: Any) -> Any:
    if isinstance(value, int) and isinstance(shift, int) and shift > 0 and value.bit_length() + shift > MAX_INT_BITS:
        raise _too_big()
    return value << shift


OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _multiply,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
    ast.LShift: _left_shift,
    ast.RShift: operator.rshift,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}

_OPERATOR_SYMBOLS = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Not: "not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


def _round(*args: Any) -> Any:
    if len(args) not in (1, 2):
        raise CalculationError(f"round() takes 1 or 2 arguments ({len(args)} given).")
    if len(args) == 1:
        return round(args[0])
    value, ndigits = args
    if not isinstance(ndigits, int) or isinstance(ndigits, bool):
        raise CalculationError("round(): the number of digits must be an integer.")
    if abs(ndigits) > MAX_ROUND_DIGITS:
        raise CalculationError(
            f"round(): the number of digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}."
        )
    return round(value, ndigits)


def _extreme(name: str, pick: Callable[..., Any]) -> Callable[..., Any]:
    def extreme(*values: Any) -> Any:
        # Builtin min/max treat a single argument as an iterable; here it is just a number.
        if not values:
            raise CalculationError(f"{name}() needs at least one number.")
        return pick(values)

    return extreme


def _domain_checked(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def checked(*args: Any) -> Any:
        try:
            return function(*args)
        except ValueError:
            # math raises a bare "math domain error"; naming the function tells the model what to fix.
            raise CalculationError(f"{name}() got an argument outside its domain.")

    return checked


_MATH_FUNCTIONS = (
    *("sqrt", "floor", "ceil", "log", "log10", "log2", "exp", "hypot", "degrees", "radians"),
    *("sin", "cos", "tan", "asin", "acos", "atan", "atan2"),
)
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": _round,
    "min": _extreme("min", min),
    "max": _extreme("max", max),
    **{name: _domain_checked(name, getattr(math, name)) for name in _MATH_FUNCTIONS},
}
NAMES: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_NODE_DESCRIPTIONS = {
    ast.Attribute: "Attribute access (.)",
    ast.Subscript: "Indexing ([])",
    ast.Starred: "Unpacking (*)",
    ast.Lambda: "Lambda functions",
    ast.IfExp: "Conditional expressions",
    ast.BoolOp: "Boolean operators (and, or)",
    ast.NamedExpr: "Assignments",
    ast.JoinedStr: "Strings",
    ast.FormattedValue: "Strings",
    ast.Tuple: "Tuples",
    ast.List: "Lists",
    ast.Set: "Sets",
    ast.Dict: "Dictionaries",
    ast.ListComp: "Comprehensions",
    ast.SetComp: "Comprehensions",
    ast.DictComp: "Comprehensions",
    ast.GeneratorExp: "Comprehensions",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def _checked_number(value: Any) -> Any:
    """`value` if it is a real, finite, bounded number (or a comparison's bool); else a CalculationError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise _too_big()
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CalculationError("The result is not a finite number (overflow, infinity or NaN).")
        return value
    if isinstance(value, complex):
        raise CalculationError("The result is a complex number; only real numbers are supported.")
    if callable(value):
        raise CalculationError("A function must be called with arguments, e.g. sqrt(2).")
    raise CalculationError("Only numbers are allowed.")


class MathEvaluator(SimpleEval):
    """A SimpleEval reduced to real arithmetic: each node type is allow-listed and each value checked."""

    def __init__(self) -> None:
        super().__init__(operators=OPERATORS, functions=FUNCTIONS, names=NAMES)
        # Replace simpleeval's dispatch table rather than extend it: anything not listed is refused.
        self.nodes = {
            ast.Constant: self._eval_constant,
            ast.Name: self._eval_name,
            ast.UnaryOp: self._eval_unaryop,
            ast.BinOp: self._eval_binop,
            ast.Compare: self._eval_compare,
            ast.Call: self._eval_call,
        }

    def _eval(self, node: ast.AST) -> Any:
        handler = self.nodes.get(type(node))
        if handler is None:
            what = _NODE_DESCRIPTIONS.get(type(node), type(node).__name__)
            raise CalculationError(f"{what} is not allowed in a math expression.")
        return _checked_number(handler(node))

    @staticmethod
    def _eval_constant(node: ast.Constant) -> Any:
        value = node.value
        if isinstance(value, str | bytes):
            raise CalculationError("Strings are not allowed; only numbers.")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculationError(f"{value!r} is not allowed; only numbers.")
        return value

    def _eval_name(self, node: ast.Name) -> Any:
        if node.id in self.names:
            return self.names[node.id]
        if node.id in self.functions:
            raise CalculationError(f"'{node.id}' is a function; call it with arguments, e.g. {node.id}(2).")
        raise CalculationError(f"Unknown name '{node.id}'. Allowed constants: {', '.join(sorted(self.names))}.")

    def _operator(self, op: ast.AST) -> Callable[..., Any]:
        function = self.operators.get(type(op))
        if function is None:
            symbol = _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)
            raise CalculationError(f"The operator '{symbol}' is not supported.")
        return function

    def _eval_unaryop(self, node: ast.UnaryOp) -> Any:
        return self._operator(node.op)(self._eval(node.operand))

    def _eval_binop(self, node: ast.BinOp) -> Any:
        return self._operator(node.op)(self._eval(node.left), self._eval(node.right))

    def _eval_compare(self, node: ast.Compare) -> Any:
        left = self._eval(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self._eval(comparator)
            if not self._operator(op)(left, right):
                return False
            left = right
        return True

    def _eval_call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name):
            what = _NODE_DESCRIPTIONS.get(type(node.func))
            if what is not None:
                raise CalculationError(f"{what} is not allowed in a math expression.")
            raise CalculationError("Only the listed functions can be called, by name (e.g. sqrt(2)).")
        function = self.functions.get(node.func.id)
        if function is None:
            raise CalculationError(
                f"Unknown function '{node.func.id}'. Available functions: {', '.join(sorted(self.functions))}."
            )
        if node.keywords:
            raise CalculationError("Keyword arguments are not supported; pass arguments by position.")
        return function(*(self._eval(argument) for argument in node.args))


def _nesting_depth(tree: ast.AST) -> int:
    # Iterative, so that measuring a hostile expression cannot itself overflow the stack.
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    return deepest


def calculate(expression: str) -> int | float | bool:
    """Evaluate a math expression safely; every refusal or failure is a ToolExecutionError with a clear message."""
    expression = expression.strip()
    if not expression:
        raise ToolExecutionError("The expression is empty.")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolExecutionError(
            f"The expression is too long ({len(expression)} characters; the limit is {MAX_EXPRESSION_LENGTH})."
        )
    try:
        # mode="eval" accepts exactly one expression, so statements (import, assignment) never parse.
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        where = f" at position {exc.offset}" if exc.offset else ""
        raise ToolExecutionError(f"Invalid expression syntax{where}: {exc.msg}.")
    except (ValueError, RecursionError, MemoryError):
        raise ToolExecutionError("Invalid expression syntax.")
    if _nesting_depth(tree.body) > MAX_NESTING_DEPTH:
        raise ToolExecutionError(f"The expression is nested too deeply (more than {MAX_NESTING_DEPTH} levels).")

    try:
        return MathEvaluator().eval(expression, previously_parsed=tree.body)
    except InvalidExpression as exc:
        raise ToolExecutionError(str(exc))
    except ZeroDivisionError:
        raise ToolExecutionError("Division by zero.")
    except OverflowError:
        raise ToolExecutionError("The result is too large to compute (numeric overflow).")
    except (TypeError, ValueError) as exc:
        raise ToolExecutionError(f"Invalid operation: {exc}.")
    except (RecursionError, MemoryError):
        raise ToolExecutionError("The expression is too complex to evaluate.")


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    expression = arguments["expression"].strip()
    return {"expression": expression, "result": calculate(expression)}


CALCULATE_MATH = Tool(
    name="calculate_math",
    display_name="Calculate Math",
    description=(
        "Evaluate a math expression and return the number (integers are exact). Supports + - * / // % ** << >>, "
        "parentheses, comparisons, the functions sqrt, abs, round, min, max, floor, ceil, log (natural, or "
        "log(x, base)), log10, log2, exp, sin, cos, tan, asin, acos, atan, atan2, hypot, degrees, radians "
        "(angles in radians) and the constants pi, e, tau. No variables."
    ),
    category="utilities",
    icon="Calculator",
    parameters={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": f"The expression, e.g. 'sqrt(2) * (3 + 4) ** 2'; at most {MAX_EXPRESSION_LENGTH} chars.",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    execute=_execute,
    keywords=(
        "math",
        "calculate",
        "calculator",
        "compute",
        "arithmetic",
        "sum",
        "multiply",
        "divide",
        "percentage",
        "equation",
        "number",
        "formula",
        "sqrt",
        "trigonometry",
    ),
)
