"""Shared fixtures: clients, users, tokens, and a clean cache for every test."""

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import connections
from rest_framework.test import APIClient

from accounts.services import tokens_issue
from tests.factories import UserFactory
from tests.support.llm_server import llm_server  # noqa: F401 - a shared fixture


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


def client_for(user) -> APIClient:
    """An API client sending a valid bearer access token for `user`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(user=user).access_token}")
    return client


@pytest.fixture
def auth_client(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_client(other_user) -> APIClient:
    return client_for(other_user)


@pytest.fixture
async def close_async_db_connections():
    """Close the connection that `database_sync_to_async` opened in its worker thread.

    Without this, PostgreSQL refuses to drop the test database at the end of the session.
    """
    yield
    await database_sync_to_async(connections.close_all)()
