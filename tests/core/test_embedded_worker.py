"""The embedded Celery worker of `manage.py serve` runs tasks sent through its in-memory broker."""

import time
from datetime import timedelta

import pytest
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.services import tokens_issue
from accounts.tasks import prune_expired_tokens
from claraverse.celery import app
from claraverse.embedded import EmbeddedCelery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_memory_broker():
    # The settings of the embedded default, whatever broker this test run was configured with.
    previous = app.conf.broker_url, app.conf.task_always_eager, app.conf.broker_transport_options
    app.conf.broker_url, app.conf.task_always_eager = "memory://", False
    app.conf.broker_transport_options = {"polling_interval": 0.05}
    _forget_broker_connections()
    yield
    app.conf.broker_url, app.conf.task_always_eager, app.conf.broker_transport_options = previous
    _forget_broker_connections()


def _forget_broker_connections():
    # The app caches its producer pool per broker URL; drop the reference (never close it: kombu shares
    # the pools process-wide) so that the next send uses the broker configured now.
    app._pool = None
    app.amqp._producer_pool = None


@override_settings(CELERY_TASK_ALWAYS_EAGER=False)
def test_embedded_worker_runs_a_task(in_memory_broker, user):
    tokens_issue(user=user)
    OutstandingToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    embedded = EmbeddedCelery(concurrency=1, with_beat=False)
    embedded.start()
    try:
        prune_expired_tokens.delay()
        deadline = time.monotonic() + 30
        while OutstandingToken.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        embedded.stop()
        connections.close_all()
    assert not OutstandingToken.objects.exists()
