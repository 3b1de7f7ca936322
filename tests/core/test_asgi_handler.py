"""The HTTP side of claraverse.asgi: one worker-thread hop per request, and health probes never queued."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.testing import HttpCommunicator

from claraverse.asgi import SyncChainASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


async def test_requests_are_answered_through_the_pool():
    handler = SyncChainASGIHandler()
    response = await HttpCommunicator(handler, "GET", "/api/nothing-here").get_response()
    assert response["status"] == 404
    assert b'"code":"NOT_FOUND"' in response["body"].replace(b" ", b"")


async def test_health_answers_while_every_request_thread_is_busy():
    handler = SyncChainASGIHandler()
    release = threading.Event()
    busy = ThreadPoolExecutor(max_workers=1)
    busy.submit(release.wait, 30)  # the only request thread is stuck, as on a dead database's pool
    handler.executor = busy
    try:
        response = await HttpCommunicator(handler, "GET", "/health").get_response(timeout=10)
        assert response["status"] == 200
    finally:
        release.set()
        busy.shutdown()
