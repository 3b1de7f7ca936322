"""`search_web`: web search through a SearXNG instance's JSON API.

The instance is the user's own (a `searxng` credential) when they have one, else the deployment's
`SEARXNG_URL`. The deployment's instance is configured by an admin and usually runs next to the app
on a private network, so it may be private; a user's instance follows the outbound rules like any
other user-chosen URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from integrations.tools.builtin.common import guarded_request, peer_excerpt
from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

DEFAULT_MAX_RESULTS = 5
MAX_RESULTS = 20
MAX_QUERY_LENGTH = 500
MAX_SNIPPET_CHARS = 500
# A SearXNG answer is a few hundred kilobytes at most; anything bigger is not a search result page.
MAX_SEARCH_RESPONSE_BYTES = 2 * 1024 * 1024
SEARCH_CATEGORIES = ("general", "news", "images", "videos", "music", "files", "it", "science", "social media", "map")
TIME_RANGES = ("day", "week", "month", "year")


def searxng_search(
    base_url: str,
    query: str,
    *,
    categories: list[str] | None = None,
    language: str | None = None,
    time_range: str | None = None,
    max_results: int = DEFAULT_MAX_RESULTS,
    allow_private: bool | None = None,
) -> list[dict[str, str]]:
    """Run one search on the SearXNG instance at `base_url` and return up to `max_results` {title, url, snippet}."""
    params: dict[str, str] = {"q": query, "format": "json"}
    if categories:
        params["categories"] = ",".join(categories)
    if language:
        params["language"] = language
    if time_range:
        params["time_range"] = time_range
    response = guarded_request(
        "GET",
        base_url.rstrip("/") + "/search",
        failure="The search service could not be reached",
        params=params,
        headers={"Accept": "application/json"},
        max_bytes=MAX_SEARCH_RESPONSE_BYTES,
        allow_private=allow_private,
    )
    if response.status_code == 403:
        # SearXNG answers 403 to format=json unless `search.formats` in its settings.yml lists json.
        raise ToolExecutionError(
            "The search service refused the request (HTTP 403); JSON output may be disabled on the SearXNG "
            "instance (add 'json' to search.formats in its settings.yml)."
        )
    if response.status_code == 429:
        raise ToolExecutionError("The search service is rate-limiting requests (HTTP 429); try again later.")
    if not response.is_success:
        raise ToolExecutionError(f"The search service answered HTTP {response.status_code}.")
    try:
        payload = response.json()
    except ValueError:
        raise ToolExecutionError("The search service did not answer with JSON; is the URL a SearXNG instance?")
    raw_results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(raw_results, list):
        raise ToolExecutionError("The search service answered without a list of results.")

    results: list[dict[str, str]] = []
    seen: set[str] = set()
    for item in raw_results:
        if not isinstance(item, dict):
            continue
        url = item.get("url")
        # Several engines often return the same page; the model gains nothing from duplicates.
        if not isinstance(url, str) or not url or url in seen:
            continue
        seen.add(url)
        title = item.get("title") if isinstance(item.get("title"), str) else ""
        snippet = item.get("content") if isinstance(item.get("content"), str) else ""
        results.append(
            {"title": " ".join(title.split()), "url": url, "snippet": peer_excerpt(snippet, limit=MAX_SNIPPET_CHARS)}
        )
        if len(results) >= max_results:
            break
    return results


def _user_instance(context: ToolContext) -> str | None:
    if context.credentials is None:
        return None
    try:
        fields: Mapping[str, Any] = context.credential_fields("searxng")
    except ToolExecutionError:
        # A chosen credential that cannot be used is an error; having none (or several, none chosen) just
        # means the deployment's instance serves this call.
        if context.credential_id:
            raise
        return None
    base_url = fields.get("base_url")
    return base_url.strip() if isinstance(base_url, str) and base_url.strip() else None


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    query = arguments["query"].strip()
    if not query:
        raise ToolExecutionError("The search query is empty.")
    base_url = _user_instance(context)
    allow_private: bool | None = None
    if base_url is None:
        base_url = str(getattr(settings, "SEARXNG_URL", "") or "").strip()
        if not base_url:
            raise ToolExecutionError(
                "Web search is not configured: the administrator has not set SEARXNG_URL and you have no "
                "SearXNG credential."
            )
        allow_private = True
    results = searxng_search(
        base_url,
        query,
        categories=arguments.get("categories"),
        language=arguments.get("language"),
        time_range=arguments.get("time_range"),
        max_results=arguments.get("max_results", DEFAULT_MAX_RESULTS),
        allow_private=allow_private,
    )
    return {"query": query, "results": results}


SEARCH_WEB = Tool(
    name="search_web",
    display_name="Search the Web",
    description=(
        "Search the web and return the top results as title, URL and snippet. Use it for current events, facts "
        "you are unsure of, or to find pages to read with scrape_web."
    ),
    category="data_sources",
    icon="Search",
    parameters={
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUERY_LENGTH,
                "description": "What to search for, as you would type it into a search engine.",
            },
            "categories": {
                "type": "array",
                "items": {"type": "string", "enum": list(SEARCH_CATEGORIES)},
                "minItems": 1,
                "maxItems": len(SEARCH_CATEGORIES),
                "uniqueItems": True,
                "description": "Optional result categories, e.g. ['news']. Defaults to general web results.",
            },
            "language": {
                "type": "string",
                "pattern": "^(all|auto|[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?)$",
                "description": "Optional language of the results, e.g. 'en' or 'de-CH'.",
            },
            "time_range": {
                "type": "string",
                "enum": list(TIME_RANGES),
                "description": "Optional: only results from the last day, week, month or year.",
            },
            "max_results": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_RESULTS,
                "default": DEFAULT_MAX_RESULTS,
                "description": f"How many results to return (1-{MAX_RESULTS}, default {DEFAULT_MAX_RESULTS}).",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    execute=_execute,
    keywords=("search", "web", "internet", "google", "find", "lookup", "news", "research", "online", "searxng"),
)
