"""search_web, scrape_web and http_request against a real HTTP server on loopback."""

from __future__ import annotations

import time

import pytest

from integrations.tools import MAX_RESULT_BYTES, ToolArgumentError, ToolContext, ToolExecutionError, tool_registry
from integrations.tools.builtin.scrape import html_to_text
from tests.support.http_peer import Answer, HTTPPeer

SLOW_ANSWER_SECONDS = 3.0
SHORT_TIMEOUT_SECONDS = 0.3


@pytest.fixture
def peer():
    with HTTPPeer() as server:
        yield server


@pytest.fixture
def private_allowed(settings):
    # Loopback peers are private addresses; tests that are not about the refusal lift it.
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    return settings


@pytest.fixture
def private_refused(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    return settings


def no_credentials(integration_id):
    raise ToolExecutionError(f"No {integration_id} credential is configured; add one under Credentials.")


def run(name, arguments, *, credentials=no_credentials, credential_id=None):
    return tool_registry.execute(name, arguments, ToolContext(credentials=credentials, credential_id=credential_id))


def assert_failed(outcome, *fragments):
    assert not outcome.success, outcome.result
    for fragment in fragments:
        assert fragment in outcome.error, outcome.error


@pytest.mark.parametrize(
    ("name", "category", "icon"),
    [("search_web", "data_sources", "Search"), ("scrape_web", "web", "Globe"), ("http_request", "web", "Send")],
)
def test_definitions(name, category, icon):
    tool = tool_registry.get(name)
    assert tool is not None
    assert (tool.category, tool.icon, tool.requires_integration) == (category, icon, None)
    assert tool.parameters["additionalProperties"] is False
    assert tool.keywords and len(tool.description) > 40


# --- search_web -----------------------------------------------------------------------------------

SEARX_RESULTS = {
    "query": "django",
    "results": [
        {
            "title": "Django",
            "url": "https://www.djangoproject.com/",
            "content": "The web  framework\n for perfectionists",
        },
        {"title": "Django (dup)", "url": "https://www.djangoproject.com/", "content": "same page, another engine"},
        {"title": "No URL", "content": "skipped"},
        {"title": "Docs", "url": "https://docs.djangoproject.com/", "content": "Documentation"},
        *({"title": f"Result {n}", "url": f"https://example.com/{n}", "content": ""} for n in range(10)),
    ],
}


class TestSearchWeb:
    def test_uses_the_deployment_instance_even_on_a_private_network(self, peer, private_refused, settings):
        settings.SEARXNG_URL = peer.url("/")
        peer.on("GET", "/search", Answer(json=SEARX_RESULTS))

        outcome = run("search_web", {"query": "  django  ", "max_results": 3})

        assert outcome.success, outcome.error
        assert outcome.result == {
            "query": "django",
            "results": [
                {
                    "title": "Django",
                    "url": "https://www.djangoproject.com/",
                    "snippet": "The web framework for perfectionists",
                },
                {"title": "Docs", "url": "https://docs.djangoproject.com/", "snippet": "Documentation"},
                {"title": "Result 0", "url": "https://example.com/0", "snippet": ""},
            ],
        }
        [request] = peer.requests
        assert request.query == {"q": ["django"], "format": ["json"]}

    def test_passes_the_optional_filters_and_defaults_to_five_results(self, peer, settings):
        settings.SEARXNG_URL = peer.url("/searx/")
        peer.on("GET", "/searx/search", Answer(json=SEARX_RESULTS))

        outcome = run(
            "search_web",
            {"query": "news", "categories": ["news", "science"], "language": "en-US", "time_range": "week"},
        )

        assert outcome.success, outcome.error
        assert len(outcome.result["results"]) == 5
        query = peer.requests[0].query
        assert query["categories"] == ["news,science"]
        assert query["language"] == ["en-US"]
        assert query["time_range"] == ["week"]

    def test_prefers_the_users_own_instance(self, private_allowed, settings):
        with HTTPPeer() as own, HTTPPeer() as deployment:
            settings.SEARXNG_URL = deployment.url()
            own.on("GET", "/search", Answer(json={"results": [{"title": "Mine", "url": "https://mine.example/"}]}))

            outcome = run("search_web", {"query": "x"}, credentials=lambda _: {"base_url": own.url()})

            assert outcome.success, outcome.error
            assert outcome.result["results"][0]["title"] == "Mine"
            assert len(own.requests) == 1
            assert deployment.requests == []

    def test_the_users_instance_follows_the_outbound_rules(self, peer, private_refused, settings):
        settings.SEARXNG_URL = ""
        outcome = run("search_web", {"query": "x"}, credentials=lambda _: {"base_url": peer.url()})
        assert_failed(outcome, "private or reserved")
        assert peer.requests == []

    def test_a_chosen_credential_that_cannot_be_used_is_an_error(self, peer, settings):
        settings.SEARXNG_URL = peer.url()

        def missing(integration_id):
            raise ToolExecutionError("No SearXNG credential with id cred_x.")

        outcome = run("search_web", {"query": "x"}, credentials=missing, credential_id="cred_x")
        assert_failed(outcome, "No SearXNG credential with id cred_x.")
        assert peer.requests == []

    def test_without_any_instance_the_error_says_so(self, settings):
        settings.SEARXNG_URL = ""
        outcome = run("search_web", {"query": "x"})
        assert_failed(outcome, "not configured", "SEARXNG_URL")

    @pytest.mark.parametrize(
        ("answer", "fragments"),
        [
            (Answer(status=403, body="Forbidden"), ("HTTP 403", "search.formats")),
            (Answer(status=429, body="Too many"), ("HTTP 429",)),
            (Answer(status=500, body="boom"), ("HTTP 500",)),
            (Answer(body="<html>not json</html>", content_type="text/html"), ("did not answer with JSON",)),
            (Answer(json={"no": "results"}), ("without a list of results",)),
            (Answer(body_bytes=3 * 1024 * 1024, content_type="application/json"), ("larger than the limit",)),
        ],
    )
    def test_service_failures(self, peer, settings, answer, fragments):
        settings.SEARXNG_URL = peer.url()
        peer.on("GET", "/search", answer)
        assert_failed(run("search_web", {"query": "x"}), *fragments)

    def test_a_slow_service_times_out(self, peer, settings):
        settings.SEARXNG_URL = peer.url()
        settings.TOOL_HTTP_TIMEOUT_SECONDS = SHORT_TIMEOUT_SECONDS
        peer.on("GET", "/search", Answer(json=SEARX_RESULTS, delay=SLOW_ANSWER_SECONDS))

        started = time.monotonic()
        outcome = run("search_web", {"query": "x"})

        assert_failed(outcome, "The search service could not be reached")
        assert time.monotonic() - started < SLOW_ANSWER_SECONDS / 2

    @pytest.mark.parametrize(
        "arguments",
        [
            {},
            {"query": ""},
            {"query": "x", "max_results": 0},
            {"query": "x", "max_results": 21},
            {"query": "x", "time_range": "decade"},
            {"query": "x", "categories": ["cats"]},
            {"query": "x", "language": "english please"},
            {"query": "x", "engine": "google"},
        ],
    )
    def test_argument_validation(self, arguments):
        with pytest.raises(ToolArgumentError):
            run("search_web", arguments)


# --- scrape_web -----------------------------------------------------------------------------------

ARTICLE = """<!doctype html>
<html><head><title>  The   Title </title><style>body { color: red }</style>
<script>var secret = "do not show";</script></head>
<body>
<header><a href="/">Site header</a></header>
<nav><ul><li>Menu item</li></ul></nav>
<main>
  <h1>Main   heading</h1>
  <p>First paragraph with <b>bold</b> text &amp; an entity.</p>
  <h2>Sub</h2>
  <ul><li>One</li><li>Two <em>items</em></li></ul>
  <pre>line one
  line two</pre>
  <noscript>Enable JavaScript</noscript>
  <table><tr><td>a</td><td>b</td></tr></table>
</main>
<footer>Copyright footer</footer>
</body></html>"""


class TestScrapeWeb:
    def test_reads_the_text_of_an_html_page_after_a_redirect(self, peer, private_allowed):
        peer.on("GET", "/old", Answer(status=301, headers={"Location": "/article"}))
        peer.on("GET", "/article", Answer(body=ARTICLE, content_type="text/html; charset=utf-8"))

        outcome = run("scrape_web", {"url": peer.url("/old")})

        assert outcome.success, outcome.error
        assert outcome.result == {
            "url": peer.url("/article"),
            "title": "The Title",
            "text": "# Main heading\nFirst paragraph with bold text & an entity.\n## Sub\n- One\n- Two items\n"
            "line one\nline two\na b",
            "truncated": False,
        }
        assert "text/html" in peer.requests[1].headers["accept"]

    def test_reads_plain_text(self, peer, private_allowed):
        peer.on("GET", "/notes.txt", Answer(body="Line  one\r\n\r\n\r\nLine two\n", content_type="text/plain"))
        outcome = run("scrape_web", {"url": peer.url("/notes.txt")})
        assert outcome.success, outcome.error
        assert (outcome.result["title"], outcome.result["text"]) == ("", "Line one\n\nLine two")

    def test_decodes_with_the_meta_charset(self, peer, private_allowed):
        page = '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head><p>Cr\xe8me br\xfbl\xe9e</p>'
        peer.on("GET", "/", Answer(body=page.encode("iso-8859-1"), content_type="text/html"))
        outcome = run("scrape_web", {"url": peer.url("/")})
        assert outcome.success, outcome.error
        assert (outcome.result["title"], outcome.result["text"]) == ("Café", "Crème brûlée")

    def test_cuts_the_text_at_max_chars(self, peer, private_allowed):
        peer.on("GET", "/", Answer(body="<p>" + "word " * 1000 + "</p>", content_type="text/html"))
        outcome = run("scrape_web", {"url": peer.url("/"), "max_chars": 100})
        assert outcome.success, outcome.error
        assert len(outcome.result["text"]) == 100
        assert outcome.result["truncated"] is True

    def test_long_text_is_cut_to_fit_the_result_cap_and_says_so(self, peer, private_allowed):
        peer.on("GET", "/", Answer(body="<p>" + "ü" * 60_000 + "</p>", content_type="text/html"))
        outcome = run("scrape_web", {"url": peer.url("/"), "max_chars": 100_000})
        assert outcome.success, outcome.error
        # The tool cut it itself (truthfully flagged) instead of the registry mangling it.
        assert outcome.truncated is False
        assert outcome.result["truncated"] is True
        assert set(outcome.result["text"]) == {"ü"}
        assert len(outcome.result["text"].encode()) < MAX_RESULT_BYTES

    def test_reads_at_most_the_byte_cap_of_a_huge_page(self, peer, private_allowed, settings):
        settings.TOOL_SCRAPE_MAX_BYTES = 1000
        # No Content-Length: the server would stream 50 MB until the client hangs up.
        peer.on(
            "GET",
            "/",
            Answer(body=b"<p>", body_bytes=50 * 1024 * 1024, content_type="text/plain", declare_length=False),
        )

        started = time.monotonic()
        outcome = run("scrape_web", {"url": peer.url("/")})

        assert outcome.success, outcome.error
        assert outcome.result["truncated"] is True
        assert len(outcome.result["text"]) <= 1000
        assert time.monotonic() - started < 2

    @pytest.mark.parametrize(
        ("answer", "fragments"),
        [
            (Answer(status=404, body="missing"), ("HTTP 404",)),
            (Answer(body=b"%PDF-1.7", content_type="application/pdf"), ("not HTML or plain text", "application/pdf")),
            (Answer(body=b"\x89PNG"), ("not HTML or plain text", "unknown")),
        ],
    )
    def test_failures(self, peer, private_allowed, answer, fragments):
        peer.on("GET", "/", answer)
        assert_failed(run("scrape_web", {"url": peer.url("/")}), *fragments)

    def test_refuses_a_private_address(self, peer, private_refused):
        outcome = run("scrape_web", {"url": peer.url("/")})
        assert_failed(outcome, "The page could not be fetched", "private or reserved")
        assert peer.requests == []

    def test_a_slow_page_times_out(self, peer, private_allowed, settings):
        settings.TOOL_HTTP_TIMEOUT_SECONDS = SHORT_TIMEOUT_SECONDS
        peer.on("GET", "/", Answer(body="late", delay=SLOW_ANSWER_SECONDS))
        started = time.monotonic()
        assert_failed(run("scrape_web", {"url": peer.url("/")}), "The page could not be fetched")
        assert time.monotonic() - started < SLOW_ANSWER_SECONDS / 2

    @pytest.mark.parametrize(
        "arguments",
        [
            {},
            {"url": "ftp://example.com/file"},
            {"url": "file:///etc/passwd"},
            {"url": "https://example.com", "max_chars": 10},
            {"url": "https://example.com", "max_chars": 100_001},
            {"url": "https://example.com", "selector": "main"},
        ],
    )
    def test_argument_validation(self, arguments):
        with pytest.raises(ToolArgumentError):
            run("scrape_web", arguments)


class TestHtmlToText:
    def test_unclosed_elements_inside_skipped_ones_do_not_hide_the_rest(self):
        assert html_to_text("<nav><ul><li>menu</nav><p>kept</p>") == ("", "kept")

    def test_the_title_of_an_inline_svg_is_not_the_page_title(self):
        title, _ = html_to_text("<svg><title>icon</title></svg><title>Page</title>")
        assert title == "Page"

    def test_an_empty_heading_does_not_mark_the_next_line(self):
        assert html_to_text("<h2></h2><p>plain</p><li></li><p>also plain</p>")[1] == "plain\nalso plain"

    def test_line_breaks_and_self_closed_tags(self):
        assert html_to_text("one<br>two<br/>three<hr/>four")[1] == "one\ntwo\nthree\nfour"

    def test_a_page_without_a_closing_head_still_has_a_body(self):
        assert html_to_text("<html><head><title>T</title><body><p>body text</p>") == ("T", "body text")


# --- http_request ---------------------------------------------------------------------------------


class TestHttpRequest:
    def test_get_with_query_and_headers_parses_json(self, peer, private_allowed):
        peer.on("GET", "/api/items", Answer(json={"items": [1, 2]}, headers={"X-Total": "2"}))

        outcome = run(
            "http_request",
            {
                "url": peer.url("/api/items"),
                "query": {"page": 2, "q": "a b", "exact": True},
                "headers": {"Accept": "application/json", "X-Trace": "t-1"},
            },
        )

        assert outcome.success, outcome.error
        result = outcome.result
        assert (result["status"], result["json"], result["truncated"]) == (200, {"items": [1, 2]}, False)
        assert result["body"] == '{"items": [1, 2]}'
        assert result["headers"]["x-total"] == "2"
        assert result["headers"]["content-type"] == "application/json"
        [request] = peer.requests
        assert request.query == {"page": ["2"], "q": ["a b"], "exact": ["true"]}
        assert request.headers["x-trace"] == "t-1"

    def test_post_sends_a_json_body(self, peer, private_allowed):
        peer.on("POST", "/api/items", Answer(status=201, json={"id": 7}))
        outcome = run("http_request", {"method": "POST", "url": peer.url("/api/items"), "body": {"name": "x"}})
        assert outcome.success, outcome.error
        assert (outcome.result["status"], outcome.result["json"]) == (201, {"id": 7})
        request = peer.requests[0]
        assert request.json() == {"name": "x"}
        assert request.headers["content-type"] == "application/json"

    def test_a_string_body_is_sent_as_is(self, peer, private_allowed):
        peer.on("PUT", "/raw", Answer(status=204))
        outcome = run(
            "http_request",
            {"method": "PUT", "url": peer.url("/raw"), "body": "a=1&b=2", "headers": {"Content-Type": "text/csv"}},
        )
        assert outcome.success, outcome.error
        assert outcome.result["status"] == 204
        assert "json" not in outcome.result
        assert (peer.requests[0].text, peer.requests[0].headers["content-type"]) == ("a=1&b=2", "text/csv")

    def test_an_error_status_is_a_result(self, peer, private_allowed):
        peer.on("DELETE", "/thing", Answer(status=500, body="exploded"))
        outcome = run("http_request", {"method": "DELETE", "url": peer.url("/thing")})
        assert outcome.success, outcome.error
        assert (outcome.result["status"], outcome.result["body"]) == (500, "exploded")

    def test_head(self, peer, private_allowed):
        peer.on("HEAD", "/", Answer(body="ignored"))
        outcome = run("http_request", {"method": "HEAD", "url": peer.url("/")})
        assert outcome.success, outcome.error
        assert (outcome.result["status"], outcome.result["body"]) == (200, "")

    def test_the_response_is_read_up_to_the_byte_cap(self, peer, private_allowed, settings):
        settings.TOOL_HTTP_MAX_RESPONSE_BYTES = 1000
        peer.on("GET", "/big", Answer(body=b'{"a": "', body_bytes=5000, content_type="application/json"))
        outcome = run("http_request", {"url": peer.url("/big")})
        assert outcome.success, outcome.error
        assert outcome.result["truncated"] is True
        assert len(outcome.result["body"]) == 1000
        assert "json" not in outcome.result

    def test_a_long_body_is_cut_to_fit_the_result(self, peer, private_allowed):
        peer.on("GET", "/long", Answer(body="z" * 200_000))
        outcome = run("http_request", {"url": peer.url("/long")})
        assert outcome.success, outcome.error
        assert outcome.truncated is False
        assert outcome.result["truncated"] is True
        assert 0 < len(outcome.result["body"]) < 20_000

    def test_refuses_a_private_address(self, peer, private_refused):
        outcome = run("http_request", {"url": peer.url("/")})
        assert_failed(outcome, "The request failed", "private or reserved")
        assert peer.requests == []

    def test_timeout(self, peer, private_allowed):
        peer.on("GET", "/slow", Answer(body="late", delay=SLOW_ANSWER_SECONDS))
        started = time.monotonic()
        assert_failed(run("http_request", {"url": peer.url("/slow"), "timeout_ms": 300}), "The request failed")
        assert time.monotonic() - started < SLOW_ANSWER_SECONDS / 2

    def test_a_refused_connection_is_reported(self, private_allowed):
        with HTTPPeer() as gone:
            url = gone.url("/")
        assert_failed(run("http_request", {"url": url}), "Could not connect")

    @pytest.mark.parametrize(
        ("arguments", "fragment"),
        [
            ({"method": "GET", "body": {"a": 1}}, "cannot have a body"),
            ({"headers": {"Host": "evil.example"}}, "'Host' is set automatically"),
            ({"headers": {"Content-Length": "5"}}, "set automatically"),
        ],
    )
    def test_refused_requests(self, peer, private_allowed, arguments, fragment):
        assert_failed(run("http_request", {"url": peer.url("/"), **arguments}), fragment)
        assert peer.requests == []

    @pytest.mark.parametrize(
        "arguments",
        [
            {},
            {"url": "gopher://example.com"},
            {"url": "https://example.com", "method": "TRACE"},
            {"url": "https://example.com", "timeout_ms": 10},
            {"url": "https://example.com", "timeout_ms": 120_000},
            {"url": "https://example.com", "headers": {"X-Count": 1}},
            {"url": "https://example.com", "query": {"a": {"nested": 1}}},
            {"url": "https://example.com", "follow": True},
        ],
    )
    def test_argument_validation(self, arguments):
        with pytest.raises(ToolArgumentError):
            run("http_request", arguments)


def test_parsing_stops_once_enough_text_is_found():
    page = "<p>" + "word " * 20 + "</p>"
    title, text = html_to_text("<title>T</title>" + page * 100_000, max_chars=1000)
    assert title == "T"
    assert 1000 < len(text) < 1000 + 64 * 1024
