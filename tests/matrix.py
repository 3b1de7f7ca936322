"""The access matrix every endpoint runs (DESIGN.md, Tests): anonymous 401, other user 404,
owner 2xx, bad input 400 — each with the error envelope."""

from __future__ import annotations

from dataclasses import dataclass, field

from rest_framework.test import APIClient


def assert_envelope(response, status: int, code: str) -> dict:
    """The response has `status` and the CONTRACT §1 envelope with `code`; returns the body."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    body = response.json()
    assert set(body) == {"error", "code", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["details"], dict), body
    return body


@dataclass
class AccessCase:
    """One request to check: method, path and (for writes) a valid and an invalid body."""

    method: str
    path: str
    body: dict | None = None
    bad_body: dict | None = None
    owner_status: int = 200
    extra: dict = field(default_factory=dict)


def _send(client: APIClient, case: AccessCase, body):
    return getattr(client, case.method.lower())(case.path, body, format="json", **case.extra)


def assert_access_matrix(case: AccessCase, *, owner: APIClient, other: APIClient | None = None) -> None:
    """Run the matrix for one endpoint of an owned resource.

    `other` (a client of another user) must get 404, never 403, so existence does not leak.
    """
    assert_envelope(_send(APIClient(), case, case.body), 401, "UNAUTHORIZED")
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_envelope(_send(bad, case, case.body), 401, "UNAUTHORIZED")
    if other is not None:
        assert_envelope(_send(other, case, case.body), 404, "NOT_FOUND")
    if case.bad_body is not None:
        assert_envelope(_send(owner, case, case.bad_body), 400, "VALIDATION_ERROR")
    response = _send(owner, case, case.body)
    assert response.status_code == case.owner_status, (response.status_code, response.content[:500])
