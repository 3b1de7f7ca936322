"""Fixtures of the hostile-client tests."""

import pytest

from tests.hostile.resources import create_owned


@pytest.fixture
def unthrottled(settings):
    """No request-rate limits: the sweeps send hundreds of requests, and a 429 would hide the answer under test."""
    for name in (
        "RATE_LIMIT_GLOBAL_API",
        "RATE_LIMIT_PUBLIC_READ",
        "RATE_LIMIT_AUTHENTICATED",
        "RATE_LIMIT_WEBSOCKET",
        "RATE_LIMIT_UPLOAD",
        "RATE_LIMIT_IMAGE_PROXY",
    ):
        setattr(settings, name, 0)
    return settings


@pytest.fixture
def upload_root(tmp_path, settings):
    settings.UPLOAD_ROOT = str(tmp_path / "uploads")
    return tmp_path / "uploads"


@pytest.fixture
def owned(auth_client, user, upload_root, unthrottled) -> dict[str, str]:
    """One of each of user A's (`user`'s) resources."""
    return create_owned(auth_client, user)
