"""The tool registry: registration, lookup, LLM specs, argument validation and safe execution."""

import json
import logging
import time

import pytest

from integrations.llm.types import ToolSpec
from integrations.tools import (
    MAX_RESULT_BYTES,
    Tool,
    ToolArgumentError,
    ToolContext,
    ToolExecutionError,
    ToolNotFound,
    ToolOutcome,
    ToolRegistrationError,
    ToolRegistry,
    tool_registry,
)
from integrations.tools.registry import fit_result

ECHO_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "count": {"type": "integer", "minimum": 1},
        "recipients": {"type": "array", "items": {"type": "string", "format": "email"}},
        "options": {
            "type": "object",
            "properties": {"level": {"enum": ["low", "high"]}},
            "additionalProperties": False,
        },
    },
    "required": ["text"],
    "additionalProperties": False,
}


def make_tool(name="echo", execute=None, category="utilities", requires_integration=None, **overrides):
    def echo(arguments, context):
        return {"text": arguments["text"]}

    fields = {
        "name": name,
        "display_name": name.replace("_", " ").title(),
        "description": f"The {name} tool.",
        "category": category,
        "icon": "Box",
        "parameters": ECHO_SCHEMA,
        "execute": execute or echo,
        "requires_integration": requires_integration,
        "keywords": ["echo", "repeat"],
    }
    fields.update(overrides)
    return Tool(**fields)


@pytest.fixture
def registry():
    return ToolRegistry()


class TestRegistration:
    def test_register_and_get(self, registry):
        tool = registry.register(make_tool())
        assert registry.get("echo") is tool
        assert "echo" in registry
        assert len(registry) == 1

    def test_duplicate_name_is_refused(self, registry):
        registry.register(make_tool())
        with pytest.raises(ToolRegistrationError, match="already registered"):
            registry.register(make_tool(description="Another echo."))
        assert len(registry) == 1

    def test_get_unknown_is_none(self, registry):
        assert registry.get("nope") is None

    def test_all_names_and_categories_are_sorted(self, registry):
        registry.register(make_tool("send_slack", category="communication", requires_integration="slack"))
        registry.register(make_tool("echo"))
        registry.register(make_tool("abacus", category="math_things"))
        assert [tool.name for tool in registry.all()] == ["abacus", "echo", "send_slack"]
        assert registry.names() == ["abacus", "echo", "send_slack"]
        assert registry.categories() == [
            {"id": "communication", "name": "Communication"},
            {"id": "math_things", "name": "Math Things"},
            {"id": "utilities", "name": "Utilities"},
        ]

    def test_available_filters_by_held_integrations(self, registry):
        registry.register(make_tool("send_slack", requires_integration="slack"))
        registry.register(make_tool("send_discord", requires_integration="discord"))
        registry.register(make_tool("echo"))
        assert [tool.name for tool in registry.available([])] == ["echo"]
        assert [tool.name for tool in registry.available({"slack"})] == ["echo", "send_slack"]

    @pytest.mark.parametrize("name", ["Echo", "echo-tool", "1echo", "", "e" * 65, "echo tool"])
    def test_invalid_names_are_refused(self, name):
        with pytest.raises(ToolRegistrationError, match="Invalid tool name"):
            make_tool(name)

    @pytest.mark.parametrize(
        "parameters",
        [
            {"type": "string"},
            {"properties": {}},
            {"type": "object", "properties": {"a": {"type": "no-such-type"}}},
            {"type": "object", "required": "text"},
        ],
    )
    def test_invalid_parameter_schemas_are_refused(self, parameters):
        with pytest.raises(ToolRegistrationError):
            make_tool(parameters=parameters)

    def test_keywords_become_a_tuple(self):
        assert make_tool().keywords == ("echo", "repeat")

    def test_public_dict_has_the_contract_shape(self):
        tool = make_tool("send_slack", category="communication", requires_integration="slack")
        public = tool.public_dict()
        assert public == {
            "name": "send_slack",
            "display_name": "Send Slack",
            "description": "The send_slack tool.",
            "category": "communication",
            "icon": "Box",
            "parameters": ECHO_SCHEMA,
            "requires_integration": "slack",
        }
        public["parameters"]["properties"].clear()
        assert tool.parameters["properties"], "public_dict must not expose the tool's own schema for mutation"
        json.dumps(public)


class TestSpecForLLM:
    def test_specs_follow_requested_order_without_duplicates(self, registry):
        registry.register(make_tool("alpha"))
        registry.register(make_tool("beta"))
        specs = registry.spec_for_llm(["beta", "alpha", "beta"])
        assert specs == [
            ToolSpec(name="beta", description="The beta tool.", parameters=ECHO_SCHEMA),
            ToolSpec(name="alpha", description="The alpha tool.", parameters=ECHO_SCHEMA),
        ]
        assert all(isinstance(spec, ToolSpec) for spec in specs)

    def test_no_names_means_every_tool(self, registry):
        registry.register(make_tool("beta"))
        registry.register(make_tool("alpha"))
        assert [spec.name for spec in registry.spec_for_llm()] == ["alpha", "beta"]

    def test_unknown_name_raises(self, registry):
        registry.register(make_tool())
        with pytest.raises(ToolNotFound) as caught:
            registry.spec_for_llm(["echo", "ghost"])
        assert caught.value.name == "ghost"

    def test_spec_parameters_are_a_copy(self, registry):
        tool = registry.register(make_tool())
        spec = registry.spec_for_llm(["echo"])[0]
        spec.parameters["properties"]["text"]["type"] = "integer"
        assert tool.parameters["properties"]["text"]["type"] == "string"


class TestArgumentValidation:
    def test_unknown_tool_is_refused(self, registry):
        with pytest.raises(ToolNotFound, match="Unknown tool 'ghost'"):
            registry.execute("ghost", {}, ToolContext())

    def test_every_problem_is_listed_with_its_json_path(self, registry):
        registry.register(make_tool())
        arguments = {"count": 0, "recipients": ["a@example.com", 7, "not-an-email"], "options": {"level": "max"}}
        with pytest.raises(ToolArgumentError) as caught:
            registry.execute("echo", arguments)
        errors = caught.value.errors
        paths = [error["path"] for error in errors]
        assert paths == ["$", "$.count", "$.options.level", "$.recipients[1]", "$.recipients[2]"]
        by_path = {error["path"]: error["message"] for error in errors}
        assert "'text' is a required property" in by_path["$"]
        assert "minimum" in by_path["$.count"]
        assert "is not of type 'string'" in by_path["$.recipients[1]"]
        assert "email" in by_path["$.recipients[2]"]
        assert caught.value.tool_name == "echo"
        for path in paths:
            assert path in caught.value.message

    def test_additional_properties_are_refused(self, registry):
        registry.register(make_tool())
        with pytest.raises(ToolArgumentError) as caught:
            registry.execute("echo", {"text": "hi", "shell": "rm -rf /"})
        assert caught.value.errors == [
            {"path": "$", "message": "Additional properties are not allowed ('shell' was unexpected)"}
        ]

    def test_nested_additional_properties_are_refused(self, registry):
        registry.register(make_tool())
        with pytest.raises(ToolArgumentError) as caught:
            registry.execute("echo", {"text": "hi", "options": {"level": "low", "extra": 1}})
        assert [error["path"] for error in caught.value.errors] == ["$.options"]

    @pytest.mark.parametrize("arguments", [None, [], "text", 3])
    def test_non_object_arguments_are_refused(self, registry, arguments):
        registry.register(make_tool())
        with pytest.raises(ToolArgumentError) as caught:
            registry.execute("echo", arguments)
        assert caught.value.errors[0]["path"] == "$"
        assert "is not of type 'object'" in caught.value.errors[0]["message"]

    def test_huge_offending_values_are_clipped_in_messages(self, registry):
        registry.register(make_tool())
        with pytest.raises(ToolArgumentError) as caught:
            registry.execute("echo", {"text": 1, "count": "x" * 100_000})
        assert len(caught.value.message) < 2_000

    def test_tool_is_not_run_when_arguments_are_invalid(self, registry):
        calls = []
        registry.register(make_tool(execute=lambda arguments, context: calls.append(arguments)))
        with pytest.raises(ToolArgumentError):
            registry.execute("echo", {})
        assert calls == []


class TestExecution:
    def test_success_returns_the_result(self, registry):
        registry.register(make_tool())
        outcome = registry.execute("echo", {"text": "héllo"})
        assert outcome == ToolOutcome(
            success=True, result={"text": "héllo"}, error=None, duration_ms=outcome.duration_ms
        )
        assert isinstance(outcome.duration_ms, int)
        assert outcome.duration_ms >= 0
        assert outcome.truncated is False
        assert json.loads(outcome.model_content()) == {"text": "héllo"}

    def test_context_reaches_the_tool(self, registry):
        seen = []
        registry.register(make_tool(execute=lambda arguments, context: seen.append(context)))
        context = ToolContext(user="someone", credential_id="cred_abc")
        registry.execute("echo", {"text": "x"}, context)
        registry.execute("echo", {"text": "x"})
        assert seen[0] is context
        assert seen[1] == ToolContext()

    def test_duration_is_measured(self, registry):
        registry.register(make_tool(execute=lambda arguments, context: time.sleep(0.05)))
        assert registry.execute("echo", {"text": "x"}).duration_ms >= 50

    def test_tool_execution_error_becomes_a_failed_outcome(self, registry):
        def refuse(arguments, context):
            raise ToolExecutionError("The channel 'general' does not exist.")

        registry.register(make_tool(execute=refuse))
        outcome = registry.execute("echo", {"text": "x"})
        assert outcome.success is False
        assert outcome.result is None
        assert outcome.error == "The channel 'general' does not exist."
        assert json.loads(outcome.model_content()) == {"error": "The channel 'general' does not exist."}
        assert outcome.as_dict()["success"] is False

    def test_unexpected_exception_is_generic_and_logged(self, registry, caplog):
        def explode(arguments, context):
            raise RuntimeError("password=hunter2 leaked from a stack frame")

        registry.register(make_tool(execute=explode))
        with caplog.at_level(logging.ERROR, logger="claraverse.tools"):
            outcome = registry.execute("echo", {"text": "x"})
        assert outcome.success is False
        assert outcome.result is None
        assert outcome.error == "The tool 'echo' failed unexpectedly."
        assert "hunter2" not in outcome.model_content()
        records = [record for record in caplog.records if record.name == "claraverse.tools"]
        assert records, "the failure must be logged"
        assert records[0].exc_info is not None, "the log must carry the traceback"

    @pytest.mark.parametrize("result", [object(), {"value": float("nan")}, {"value": float("inf")}, {1j: 2}])
    def test_non_json_results_fail_safely(self, registry, result):
        registry.register(make_tool(execute=lambda arguments, context: result))
        outcome = registry.execute("echo", {"text": "x"})
        assert outcome.success is False
        assert outcome.error == "The tool 'echo' returned a result that could not be encoded as JSON."

    def test_results_are_plain_json(self, registry):
        registry.register(make_tool(execute=lambda arguments, context: {"pair": (1, 2), 3: None}))
        assert registry.execute("echo", {"text": "x"}).result == {"pair": [1, 2], "3": None}

    def test_none_result_is_a_success(self, registry):
        registry.register(make_tool(execute=lambda arguments, context: None))
        outcome = registry.execute("echo", {"text": "x"})
        assert outcome.success is True
        assert outcome.result is None


def encoded_size(value):
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


class TestResultCap:
    def test_small_results_are_untouched(self):
        value = {"text": "x" * 1000, "items": list(range(100))}
        assert fit_result(value) == (value, False)

    def test_long_text_is_cut_keeping_the_shape(self, registry):
        page = "word " * 40_000
        registry.register(make_tool(execute=lambda arguments, context: {"url": "https://e.com", "content": page}))
        outcome = registry.execute("echo", {"text": "x"})
        assert outcome.success is True
        assert outcome.truncated is True
        assert encoded_size(outcome.result) <= MAX_RESULT_BYTES
        assert outcome.result["url"] == "https://e.com"
        assert outcome.result["content"].startswith("word word")
        assert "truncated" in outcome.result["content"]

    def test_multibyte_text_is_measured_in_bytes(self):
        value, truncated = fit_result({"content": "日本語" * 20_000})
        assert truncated is True
        assert encoded_size(value) <= MAX_RESULT_BYTES

    def test_long_lists_are_cut_with_a_marker(self):
        value, truncated = fit_result({"results": [{"title": f"result {i}", "body": "b" * 200} for i in range(5000)]})
        assert truncated is True
        assert encoded_size(value) <= MAX_RESULT_BYTES
        assert value["results"][0] == {"title": "result 0", "body": "b" * 200}
        assert "more items truncated" in value["results"][-1]

    def test_objects_with_many_keys_are_cut_with_a_marker(self):
        value, truncated = fit_result({f"key_{i:06d}": i for i in range(20_000)})
        assert truncated is True
        assert encoded_size(value) <= MAX_RESULT_BYTES
        assert value["key_000000"] == 0
        assert "more keys truncated" in value["…"]

    def test_unshrinkable_results_become_a_marked_prefix(self):
        wide = 0
        for _ in range(7):
            wide = [wide] * 5
        value, truncated = fit_result(wide)
        assert truncated is True
        assert isinstance(value, str)
        assert value.startswith("[[[[[[[0,0,0,0,0]")
        assert "truncated: result was" in value
        assert encoded_size(value) <= MAX_RESULT_BYTES

    def test_deeply_nested_results_are_bounded(self):
        nested = "x" * 100_000
        for _ in range(200):
            nested = [nested]
        value, truncated = fit_result(nested)
        assert truncated is True
        assert encoded_size(value) <= MAX_RESULT_BYTES

    @pytest.mark.parametrize("limit", [100, 1000, 5000])
    def test_custom_limits_are_honoured(self, limit):
        value, truncated = fit_result({"a": "é" * 10_000, "b": list(range(10_000))}, max_bytes=limit)
        assert truncated is True
        assert encoded_size(value) <= limit


class TestToolContext:
    def test_credential_fields_use_the_resolver(self):
        context = ToolContext(credentials=lambda integration_id: {"webhook_url": f"https://{integration_id}.test"})
        assert context.credential_fields("slack") == {"webhook_url": "https://slack.test"}

    def test_credential_fields_without_resolver_fail_safely(self):
        with pytest.raises(ToolExecutionError, match="'slack' credential"):
            ToolContext().credential_fields("slack")


class TestDefaultRegistry:
    def test_builtins_are_registered_once(self):
        assert {"calculate_math", "get_current_time"} <= set(tool_registry.names())
        assert len(tool_registry.names()) == len(set(tool_registry.names()))

    def test_reimporting_does_not_register_again(self):
        import importlib

        import integrations.tools

        before = integrations.tools.tool_registry.names()
        importlib.import_module("integrations.tools")
        importlib.import_module("integrations.tools.builtin")
        assert integrations.tools.tool_registry.names() == before

    def test_builtin_public_dicts(self):
        calculator = tool_registry.get("calculate_math").public_dict()
        assert calculator["category"] == "utilities"
        assert calculator["icon"] == "Calculator"
        assert calculator["requires_integration"] is None
        assert calculator["parameters"]["required"] == ["expression"]
        assert calculator["parameters"]["additionalProperties"] is False
        clock = tool_registry.get("get_current_time").public_dict()
        assert clock["icon"] == "Clock"
        assert clock["parameters"]["properties"]["timezone"]["type"] == "string"
        assert "required" not in clock["parameters"]

    def test_builtin_specs(self):
        specs = tool_registry.spec_for_llm(["calculate_math", "get_current_time"])
        assert [spec.name for spec in specs] == ["calculate_math", "get_current_time"]
        assert all(spec.description for spec in specs)
