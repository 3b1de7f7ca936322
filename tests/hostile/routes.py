"""Every HTTP route of the project, read from the URL resolver, so that a new endpoint joins the sweeps by itself."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

from apikeys.authentication import ApiKeyAuthentication

# Django's admin site: session login and HTML pages, outside the API and its contract.
OPERATOR_ADMIN_PREFIX = "admin/"
ADMIN_API_PREFIX = "api/admin/"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")

# The only routes anyone may call; each says why.
PUBLIC = {
    ("health", "GET"): "liveness probe for load balancers",
    ("api/auth/register", "POST"): "creates the account",
    ("api/auth/login", "POST"): "exchanges a password for tokens",
    ("api/auth/refresh", "POST"): "authenticated by the refresh token in its body",
    ("api/providers", "GET"): "public provider list (API.md Public Endpoints)",
    ("api/models", "GET"): "public model list (API.md Public Endpoints)",
    ("api/integrations", "GET"): "public integration catalogue (API.md Public Endpoints)",
    ("api/config/recommended-models", "GET"): "public (API.md Public Endpoints)",
    ("api/privacy-policy", "GET"): "public (API.md Public Endpoints)",
    ("api/proxy/image", "GET"): "public, rate limited per IP (API.md Public Endpoints)",
    ("api/schema/", "GET"): "the OpenAPI document",
    ("api/docs/", "GET"): "the Swagger UI page",
}


@dataclass(frozen=True)
class Route:
    """One method of one URL pattern, e.g. `PUT api/agents/<str:agent_id>`."""

    pattern: str
    method: str
    view: type

    @property
    def key(self) -> tuple[str, str]:
        return self.pattern, self.method

    @property
    def is_admin(self) -> bool:
        return self.pattern.startswith(ADMIN_API_PREFIX)

    @property
    def takes_api_key(self) -> bool:
        return ApiKeyAuthentication in getattr(self.view, "authentication_classes", ())

    def path(self, values: dict[str, str]) -> str:
        """The URL with each `<parameter>` replaced by `values[parameter]` (a KeyError names a new one)."""
        return "/" + _PARAMETER.sub(lambda match: values[match.group(1)], self.pattern)

    def __str__(self) -> str:
        return f"{self.method} /{self.pattern}"


def _walk(resolver: URLResolver, prefix: str):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def api_routes() -> list[Route]:
    """Every method of every URL pattern outside Django's admin site."""
    routes = []
    for pattern, callback in _walk(get_resolver(), ""):
        if pattern.startswith(OPERATOR_ADMIN_PREFIX):
            continue
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        # A plain function view would hide which methods it serves; the sweeps need to know them.
        assert view is not None, f"/{pattern} is not a class-based view; the hostile sweeps cannot cover it"
        routes.extend(Route(pattern, method.upper(), view) for method in HTTP_METHODS if hasattr(view, method))
    return routes
