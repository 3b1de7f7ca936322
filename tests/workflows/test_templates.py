"""Templates: native values, text rendering, strict-but-chainable undefined, the sandbox and its bounds."""

import pytest

from workflows.templates import (
    MAX_RENDERED_CHARS,
    TemplateError,
    iter_templates,
    render_string,
    render_value,
    template_references,
    template_syntax_errors,
)

CONTEXT = {
    "input": {"query": "cats", "count": 3, "flag": True},
    "nodes": {
        "fetch": {"status": 200, "json": {"results": [{"name": "a"}, {"name": "b"}]}},
        "summary": {"text": "hello"},
        "loop": {"items": [1, 2]},
        "empty": None,
    },
    "prev": {"text": "previous"},
}


class TestNative:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("{{ nodes.fetch.json.results }}", [{"name": "a"}, {"name": "b"}]),
            ("  {{ input.count + 1 }}  ", 4),
            ("{{ input.flag }}", True),
            ("{{ nodes.empty }}", None),
            ("{{ nodes.fetch.status / 4 }}", 50.0),
            ("{{ input }}", {"query": "cats", "count": 3, "flag": True}),
            ("{{ prev.text }}", "previous"),
            ("{{- input.query -}}", "cats"),
            ("{{ nodes.fetch.json.results | map(attribute='name') | list }}", ["a", "b"]),
            ("{{ nodes.fetch.json.results | map(attribute='name') }}", ["a", "b"]),  # generators become lists
            ("{{ {'q': input.query, 'n': [1, 2]} }}", {"q": "cats", "n": [1, 2]}),
            ("{{ '{\"a\": 1}' | fromjson }}", {"a": 1}),
        ],
    )
    def test_a_lone_expression_keeps_its_type(self, source, expected):
        assert render_string(source, CONTEXT) == expected

    def test_dict_keys_win_over_dict_methods(self):
        # `items` is the loop output's key, not dict.items.
        assert render_string("{{ nodes.loop.items }}", CONTEXT) == [1, 2]
        assert render_string("{{ nodes.get('summary').text }}", CONTEXT) == "hello"

    def test_result_is_a_copy(self):
        value = render_string("{{ nodes.fetch.json }}", CONTEXT)
        value["results"].append("x")
        assert CONTEXT["nodes"]["fetch"]["json"]["results"] == [{"name": "a"}, {"name": "b"}]


class TestText:
    def test_mixed_text_is_a_string(self):
        assert render_string("Find {{ input.query }} ({{ input.count }})", CONTEXT) == "Find cats (3)"

    def test_json_values_inside_text(self):
        rendered = render_string("r={{ nodes.fetch.json }} f={{ input.flag }} n={{ nodes.empty }}.", CONTEXT)
        assert rendered == 'r={"results":[{"name":"a"},{"name":"b"}]} f=true n=.'

    def test_strings_without_markers_are_untouched(self):
        assert render_string("plain {% if %} {# x #} }}", CONTEXT) == "plain {% if %} {# x #} }}"

    def test_statements_and_comments_are_plain_text(self):
        source = "{% for i in range(3) %}{{ input.query }}{% endfor %}{# c #}"
        assert render_string(source, CONTEXT) == "{% for i in range(3) %}cats{% endfor %}{# c #}"

    def test_trailing_newline_kept(self):
        assert render_string("{{ input.query }} x\n", CONTEXT) == "cats x\n"

    def test_two_expressions_render_as_text(self):
        assert render_string("{{ input.count }}{{ input.count }}", CONTEXT) == "33"

    def test_loop_variables(self):
        context = {**CONTEXT, "item": {"id": 7}, "index": 2}
        assert render_string("#{{ index }}: {{ item.id }}", context) == "#2: 7"
        assert render_string("{{ item }}", context) == {"id": 7}


class TestUndefined:
    def test_missing_node_raises_naming_the_template(self):
        with pytest.raises(TemplateError, match=r"nodes\.nope\.text.*'nope'"):
            render_string("{{ nodes.nope.text }}", CONTEXT)

    def test_missing_key_in_text_raises(self):
        with pytest.raises(TemplateError, match="no attribute 'txt'"):
            render_string("Say {{ nodes.summary.txt }}", CONTEXT)

    def test_loop_names_outside_a_loop_are_undefined(self):
        with pytest.raises(TemplateError, match="'item' is undefined"):
            render_string("{{ item }}", CONTEXT)

    def test_undefined_can_be_tested_and_defaulted(self):
        assert render_string("{{ nodes.nope.text or nodes.summary.text }}", CONTEXT) == "hello"
        assert render_string("{{ nodes.nope.text | default('none') }}", CONTEXT) == "none"
        assert render_string("{{ nodes.nope is defined }}", CONTEXT) is False

    def test_undefined_inside_a_returned_list_raises(self):
        with pytest.raises(TemplateError):
            render_string("{{ [nodes.nope] }}", CONTEXT)

    def test_nothing_but_the_five_names_is_visible(self):
        for name in ("settings", "env", "os", "config", "lipsum", "cycler", "namespace", "joiner"):
            with pytest.raises(TemplateError, match="undefined"):
                render_string("{{ " + name + " }}", {**CONTEXT, "settings": {"SECRET_KEY": "x"}})


class TestSandbox:
    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__.__mro__ }}",
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "x {{ input.__class__ }}",
            "{{ range.__globals__ }}",
            "{{ nodes.fetch.json.results.append(1) }}",
            "{{ input.update({'a': 1}) }}",
            "{{ input.pop('query') }}",
            "{{ (1).__class__.__base__ }}",
            "{{ ''.format.__globals__ }}",
            "{{ dict.mro() }}",
        ],
    )
    def test_unsafe_access_is_refused(self, source):
        with pytest.raises(TemplateError):
            render_string(source, CONTEXT)
        assert CONTEXT["input"] == {"query": "cats", "count": 3, "flag": True}

    @pytest.mark.parametrize(
        "source",
        [
            "{{ 'a' * 10000000 }}",
            "{{ [1, 2] * 10000000 }}",
            "{{ 2 ** 10000000 }}",
            "{{ 'x' | center(100000000) }}",
            "{{ 'x'.ljust(100000000) }}",
            "{{ '%100000000d' % 1 }}",
            "{{ '{:>100000000}'.format(1) }}",
            "{{ '%100000000s' | format(1) }}",
            "{{ range(100000000) | list }}",
            "{{ ('a' * 1000) | replace('a', 'b' * 2000) }}",
            "{{ ('ab' * 1000).replace('a', 'c' * 2000) }}",
            "{{ range(5000) | map('string') | map('center', 5000) | join }}",
        ],
    )
    def test_huge_results_are_refused_before_allocation(self, source):
        with pytest.raises(TemplateError):
            render_string(source, CONTEXT)

    def test_output_size_is_bounded(self):
        big = {"nodes": {"x": {"text": "a" * 600_000}}}
        with pytest.raises(TemplateError, match="longer than"):
            render_string("{{ nodes.x.text }} {{ nodes.x.text }}", big)
        assert len(render_string("{{ nodes.x.text }}", big)) == 600_000
        with pytest.raises(TemplateError, match="larger than"):
            render_string("{{ [nodes.x.text, nodes.x.text] }}", big)
        assert MAX_RENDERED_CHARS == 1_000_000

    def test_python_errors_become_template_errors(self):
        with pytest.raises(TemplateError, match="division by zero"):
            render_string("{{ 1 / 0 }}", CONTEXT)


class TestRenderValue:
    def test_every_string_is_rendered_keys_are_not(self):
        value = {"q": "{{ input.query }}", "{{ key }}": ["{{ input.count }}", 5, None, {"deep": "x{{ input.count }}"}]}
        assert render_value(value, CONTEXT) == {"q": "cats", "{{ key }}": [3, 5, None, {"deep": "x3"}]}

    def test_depth_is_bounded(self):
        value: list = []
        for _ in range(100):
            value = [value]
        with pytest.raises(TemplateError, match="nested deeper"):
            render_value(value, CONTEXT)


class TestStatic:
    def test_references(self):
        value = {
            "a": "{{ nodes.fetch.json }} {{ nodes['summary'].text }} {{ nodes.get('other') }}",
            "b": ["{{ nodes.items() }}", "{{ nodes[input.which] }}", "{{ prev.nodes.x }}", "no template nodes.zzz"],
            "c": "{{ nodes.loop.items | length }}",
        }
        assert template_references(value) == {"fetch", "summary", "other", "loop"}

    def test_references_of_broken_templates_are_empty(self):
        assert template_references("{{ nodes.a") == set()

    def test_syntax_errors_name_the_path(self):
        errors = template_syntax_errors({"ok": "{{ a }}", "list": ["x", "{{ a + }}"], "open": "{{ a"}, path="data")
        assert len(errors) == 2
        assert any(error.startswith("data.list[1]: ") for error in errors)
        assert any(error.startswith("data.open: ") for error in errors)
        assert template_syntax_errors("{{ fine }}") == []

    def test_iter_templates(self):
        assert list(iter_templates({"a": ["x", "{{ y }}"], "b": "{{ z }}"}, "data")) == [
            ("data.a[1]", "{{ y }}"),
            ("data.b", "{{ z }}"),
        ]
