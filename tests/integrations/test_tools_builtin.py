"""The built-in tools: calculate_math (a bounded, safe evaluator) and get_current_time."""

import math
import time
from datetime import UTC, datetime

import pytest

from integrations.tools import ToolArgumentError, ToolExecutionError, tool_registry
from integrations.tools.builtin.calculator import (
    MAX_EXPRESSION_LENGTH,
    MAX_INT_BITS,
    CalculationError,
    _left_shift,
    _multiply,
    _power,
    calculate,
)
from integrations.tools.builtin.clock import describe_time

# Every refusal and every success must be quick: the evaluator runs inside request and worker processes.
TIME_LIMIT_SECONDS = 0.5


def timed_calculate(expression):
    started = time.perf_counter()
    try:
        return calculate(expression)
    finally:
        assert time.perf_counter() - started < TIME_LIMIT_SECONDS, f"{expression[:60]!r} took too long"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("(-2) ** 2", 4),
        ("10 - 4 - 3", 3),
        ("100 / 8", 12.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("2 ** -1", 0.5),
        ("+5", 5),
        ("--5", 5),
        ("1_000_000 * 3", 3_000_000),
        ("0x10 + 0b11", 19),
        ("1.5e3 + 0.5", 1500.5),
        ("1 << 10", 1024),
        ("1024 >> 3", 128),
        ("2 ** 64", 18446744073709551616),
        ("3 > 2", True),
        ("1 < 2 < 3", True),
        ("3 < 2 < 4", False),
        ("2 == 2.0", True),
        ("1 != 1", False),
        ("sqrt(16)", 4.0),
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("round(1234, -2)", 1200),
        ("min(3, 1, 2)", 1),
        ("max(3, 1.5, 2)", 3),
        ("max(7)", 7),
        ("floor(2.7)", 2),
        ("ceil(2.1)", 3),
        ("floor(-2.5)", -3),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("log10(1000)", 3.0),
        ("log2(1024)", 10.0),
        ("exp(0)", 1.0),
        ("sin(0)", 0.0),
        ("cos(0)", 1.0),
        ("tan(0)", 0.0),
        ("degrees(pi)", 180.0),
        ("radians(180)", math.pi),
        ("atan2(1, 1)", math.pi / 4),
        ("hypot(3, 4)", 5.0),
        ("asin(1)", math.pi / 2),
        ("acos(1)", 0.0),
        ("atan(0)", 0.0),
        ("pi", math.pi),
        ("tau / 2", math.pi),
        ("e ** 2", math.e**2),
        ("2 * pi * 10", 20 * math.pi),
        ("sqrt(2) * (3 + 4) ** 2", math.sqrt(2) * 49),
        ("  2 + 2  ", 4),
        ("(10 ** 1000) // (10 ** 998)", 100),
        ("2 ** 9000 > 10 ** 2000", True),
        ("2 ** 1000 * 2 ** 1000 == 2 ** 2000", True),
    ],
)
def test_valid_expressions(expression, expected):
    result = timed_calculate(expression)
    assert result == pytest.approx(expected) if isinstance(expected, float) else result == expected
    assert type(result) is type(expected), f"{expression}: {type(result).__name__} instead of {type(expected).__name__}"


def test_largest_allowed_integers_are_exact():
    assert timed_calculate("2 ** 9999") == 2**9999
    assert timed_calculate("(10 ** 1000) * (10 ** 1000)") == 10**2000
    assert timed_calculate("7 ** 3000 % 1000003") == pow(7, 3000, 1000003)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # Escapes from the sandbox.
        ("().__class__", "Attribute access"),
        ("().__class__.__bases__[0].__subclasses__()", "Attribute access"),
        ("__import__('os')", "Unknown function '__import__'"),
        ("__import__('os').system('true')", "Attribute access"),
        ("x.y", "Attribute access"),
        ("pi.real", "Attribute access"),
        ("(1).__class__", "Attribute access"),
        ("exec('1')", "Unknown function 'exec'"),
        ("eval('1')", "Unknown function 'eval'"),
        ("open('/etc/passwd')", "Unknown function 'open'"),
        ("globals()", "Unknown function 'globals'"),
        ("(lambda: 1)()", "Lambda functions"),
        ("sqrt(4)(2)", "Only the listed functions"),
        ("[x for x in (1, 2)]", "Comprehensions"),
        ("(x for x in (1,))", "Comprehensions"),
        ("[1, 2]", "Lists"),
        ("(1, 2)", "Tuples"),
        ("{1: 2}", "Dictionaries"),
        ("{1}", "Sets"),
        ("max(*[1, 2])", "Unpacking"),
        ("round(2.5, ndigits=1)", "Keyword arguments"),
        ("sqrt(2)[0]", "Indexing"),
        ("(y := 2)", "Assignments"),
        ("1 if 1 else 2", "Conditional expressions"),
        ("1 and 2", "Boolean operators"),
        ("import os", "syntax"),
        ("x = 1", "syntax"),
        ("1; 2", "syntax"),
        # Names and non-numbers.
        ("x", "Unknown name 'x'"),
        ("x + 1", "Unknown name 'x'"),
        ("True + 1", "not allowed"),
        ("None", "not allowed"),
        ("'abc'", "Strings are not allowed"),
        ("'a' * 10", "Strings are not allowed"),
        ("f'{1}'", "Strings"),
        ("b'x'", "Strings are not allowed"),
        ("sqrt", "is a function"),
        ("sqrt + 1", "is a function"),
        ("1j", "not allowed"),
        ("...", "not allowed"),
        # Unsupported operators.
        ("1 & 2", "'&' is not supported"),
        ("1 | 2", "'|' is not supported"),
        ("~1", "'~' is not supported"),
        ("not 1", "'not' is not supported"),
        ("1 in 2", "'in' is not supported"),
        ("1 is 1", "'is' is not supported"),
        # Sizes that would take unbounded time or memory.
        ("9**9**9", "too large"),
        ("2**100000", "too large"),
        ("10**10**6", "too large"),
        ("10**10**100", "too large"),
        ("(-3)**100000", "too large"),
        ("10**4000", "too large"),
        ("2**10000", "too large"),
        ("(10**1000)*(10**1000)*(10**1000)*(10**1000)", "too large"),
        ("(2**5000)*(2**5000)*(2**5000)*(2**5000)*(2**5000)*(2**5000)*(2**5000)*(2**5000)", "too large"),
        ("((2**64)**64)**64", "too large"),
        ("(10**3000)**3000", "too large"),
        ("(2**9999)**9999", "too large"),
        ("2**9999 + 2**9999", "too large"),
        ("1<<100000", "too large"),
        ("1<<10**100", "too large"),
        ("(2**9000) << 2000", "too large"),
        ("round(5, -10**9)", "number of digits"),
        ("round(5, 0.5)", "number of digits"),
        ("2.0 ** 10**3000", "too large"),
        ("sin(10**3000)", "too large"),
        ("(10**3000) / 3", "too large"),
        ("exp(1000)", "too large"),
        ("-" * 300 + "1", "nested too deeply"),
        ("+".join(["1"] * 150), "nested too deeply"),
        ("1 + " * 200 + "1", "too long"),
        ("1" * (MAX_EXPRESSION_LENGTH + 1), "too long"),
        ("(" * 300 + "1" + ")" * 300, "too long"),
        ("(" * 210 + "1" + ")" * 210, "syntax"),
        # Arithmetic failures.
        ("1/0", "Division by zero"),
        ("1 // 0", "Division by zero"),
        ("5 % 0", "Division by zero"),
        ("0 ** -1", "Division by zero"),
        ("1.0 / 0.0", "Division by zero"),
        ("sqrt(-1)", "sqrt() got an argument outside its domain"),
        ("log(0)", "log() got an argument outside its domain"),
        ("acos(2)", "acos() got an argument outside its domain"),
        ("(-8) ** (1/3)", "complex number"),
        ("1e308 * 10", "not a finite number"),
        ("1e999", "not a finite number"),
        ("1e308 * 10 - 1e308 * 10", "not a finite number"),
        ("1 << -1", "Invalid operation"),
        ("1.5 << 2", "Invalid operation"),
        ("sqrt(1, 2)", "Invalid operation"),
        ("max()", "max() needs at least one number"),
        ("round()", "round() takes 1 or 2 arguments (0 given)"),
        ("round(1, 2, 3)", "round() takes 1 or 2 arguments (3 given)"),
        # Syntax errors.
        ("", "empty"),
        ("   ", "empty"),
        ("1 +", "syntax"),
        ("(1 + 2", "syntax"),
        ("2 ** ** 2", "syntax"),
        ("1 2", "syntax"),
        ("\x00", "syntax"),
    ],
)
def test_refusals_are_clear_and_fast(expression, message):
    with pytest.raises(ToolExecutionError) as caught:
        timed_calculate(expression)
    assert message.lower() in caught.value.message.lower()


@pytest.mark.parametrize(
    ("guard", "left", "right"),
    [(_power, 10**3000, 3000), (_power, 3, 7000), (_multiply, 2**6000, 2**6000), (_left_shift, 2**9000, 2000)],
)
def test_guards_refuse_before_computing(guard, left, right):
    started = time.perf_counter()
    with pytest.raises(CalculationError, match="too large"):
        guard(left, right)
    assert time.perf_counter() - started < 0.05


def test_integer_limit_is_about_ten_thousand_bits():
    assert MAX_INT_BITS == 10_000
    assert timed_calculate("2 ** 9999").bit_length() == MAX_INT_BITS


def test_worst_case_allowed_expression_is_fast():
    # As many maximal big-integer operations as fit in the length limit.
    term = "(3**6000)*(2**30)//7**2000%(5**4000)+"
    expression = (term * (MAX_EXPRESSION_LENGTH // len(term)))[:-1]
    started = time.perf_counter()
    calculate(expression)
    assert time.perf_counter() - started < TIME_LIMIT_SECONDS


class TestCalculateMathTool:
    def test_through_the_registry(self):
        outcome = tool_registry.execute("calculate_math", {"expression": " 2 ** 10 + 1 "})
        assert outcome.success is True
        assert outcome.result == {"expression": "2 ** 10 + 1", "result": 1025}

    def test_large_integer_results_stay_exact(self):
        outcome = tool_registry.execute("calculate_math", {"expression": "2 ** 200"})
        assert outcome.result["result"] == 2**200
        assert outcome.truncated is False

    def test_refusal_through_the_registry_is_a_failed_outcome(self):
        outcome = tool_registry.execute("calculate_math", {"expression": "__import__('os').system('id')"})
        assert outcome.success is False
        assert outcome.result is None
        assert "not allowed" in outcome.error

    @pytest.mark.parametrize(
        "arguments",
        [{}, {"expression": 5}, {"expression": None}, {"expression": "1+1", "mode": "unsafe"}],
    )
    def test_bad_arguments_are_refused_by_the_schema(self, arguments):
        with pytest.raises(ToolArgumentError):
            tool_registry.execute("calculate_math", arguments)

    def test_parameters_schema(self):
        assert tool_registry.get("calculate_math").parameters == {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": tool_registry.get("calculate_math").parameters["properties"]["expression"][
                        "description"
                    ],
                }
            },
            "required": ["expression"],
            "additionalProperties": False,
        }


WINTER = datetime(2024, 1, 15, 12, 30, 45, 987654, tzinfo=UTC)
SUMMER = datetime(2024, 7, 15, 12, 30, 45, tzinfo=UTC)


class TestGetCurrentTime:
    def test_utc(self):
        assert describe_time("UTC", WINTER) == {
            "timezone": "UTC",
            "iso": "2024-01-15T12:30:45+00:00",
            "utc": "2024-01-15T12:30:45Z",
            "unix": 1705321845,
            "weekday": "Monday",
            "utc_offset": "+00:00",
        }

    def test_half_hour_offset(self):
        result = describe_time("Asia/Kolkata", WINTER)
        assert result["iso"] == "2024-01-15T18:00:45+05:30"
        assert result["utc_offset"] == "+05:30"
        assert result["utc"] == "2024-01-15T12:30:45Z"
        assert result["unix"] == 1705321845

    def test_daylight_saving_time(self):
        winter = describe_time("America/New_York", WINTER)
        summer = describe_time("America/New_York", SUMMER)
        assert winter["utc_offset"] == "-05:00"
        assert winter["iso"] == "2024-01-15T07:30:45-05:00"
        assert summer["utc_offset"] == "-04:00"
        assert summer["iso"] == "2024-07-15T08:30:45-04:00"

    def test_weekday_follows_the_local_date(self):
        late = datetime(2024, 1, 14, 23, 0, tzinfo=UTC)  # Sunday in UTC, already Monday in Tokyo
        assert describe_time("UTC", late)["weekday"] == "Sunday"
        tokyo = describe_time("Asia/Tokyo", late)
        assert tokyo["weekday"] == "Monday"
        assert tokyo["utc_offset"] == "+09:00"

    def test_quarter_hour_offset(self):
        assert describe_time("Asia/Kathmandu", WINTER)["utc_offset"] == "+05:45"

    def test_default_is_utc_and_current(self):
        outcome = tool_registry.execute("get_current_time", {})
        assert outcome.success is True
        result = outcome.result
        assert result["timezone"] == "UTC"
        assert result["utc_offset"] == "+00:00"
        assert result["utc"].endswith("Z")
        assert abs(result["unix"] - time.time()) < 5
        assert datetime.fromisoformat(result["iso"]).timestamp() == result["unix"]
        assert datetime.fromisoformat(result["utc"].replace("Z", "+00:00")).timestamp() == result["unix"]

    def test_named_zone_through_the_registry(self):
        outcome = tool_registry.execute("get_current_time", {"timezone": "Asia/Kolkata"})
        assert outcome.success is True
        assert outcome.result["timezone"] == "Asia/Kolkata"
        assert outcome.result["utc_offset"] == "+05:30"
        assert outcome.result["iso"].endswith("+05:30")

    @pytest.mark.parametrize(
        "zone", ["Mars/Olympus_Mons", "Not a zone", "../../etc/passwd", "/etc/localtime", "America"]
    )
    def test_unknown_zone_is_named_in_the_error(self, zone):
        outcome = tool_registry.execute("get_current_time", {"timezone": zone})
        assert outcome.success is False
        assert f"Unknown time zone '{zone}'" in outcome.error

    @pytest.mark.parametrize("arguments", [{}, {"timezone": ""}, {"timezone": "   "}])
    def test_missing_or_blank_zone_means_utc(self, arguments):
        assert tool_registry.execute("get_current_time", arguments).result["timezone"] == "UTC"

    @pytest.mark.parametrize(("zone", "canonical"), [("utc", "UTC"), (" europe/paris ", "Europe/Paris")])
    def test_zone_names_are_case_insensitive(self, zone, canonical):
        outcome = tool_registry.execute("get_current_time", {"timezone": zone})
        assert outcome.success is True
        assert outcome.result["timezone"] == canonical

    def test_hostile_zone_names_give_short_printable_errors(self):
        for zone in ["x" * 5000, "UTC\x00", "Europe/\nParis"]:
            outcome = tool_registry.execute("get_current_time", {"timezone": zone})
            assert outcome.success is False
            assert outcome.error.startswith("Unknown time zone '")
            assert len(outcome.error) < 200
            assert outcome.error.isprintable()

    @pytest.mark.parametrize("arguments", [{"timezone": 5}, {"tz": "UTC"}])
    def test_bad_arguments_are_refused_by_the_schema(self, arguments):
        with pytest.raises(ToolArgumentError):
            tool_registry.execute("get_current_time", arguments)
